// Mirrors diffusers StableDiffusionXLImg2ImgPipeline
// (pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.py): SDXL base or refiner
// from an image or from latents, with the strength cut or denoising_start (the base->refiner
// hand-off), and the refiner's aesthetic-score conditioning.
#pragma once

#include "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.h"

namespace nd {

class StableDiffusionXLImg2ImgPipeline : public StableDiffusionXLPipeline {
 public:
  StableDiffusionXLImg2ImgPipeline(std::shared_ptr<CLIPTokenizer> tokenizer,
                                   std::shared_ptr<CLIPTextModel> text_encoder,
                                   std::shared_ptr<CLIPTokenizer> tokenizer_2,
                                   std::shared_ptr<CLIPTextModel> text_encoder_2,
                                   std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<AutoencoderKL> vae,
                                   std::shared_ptr<Scheduler> scheduler, bool force_zeros_for_empty_prompt,
                                   bool requires_aesthetics_score);

  // Returns latents (output_latents) or the decoded images in [-1, 1].
  PipelineResult run(const StableDiffusionXLRequest& request);

 protected:
  // Step 8. of image-to-image and inpainting: the prompt's embeddings with the added time ids of
  // `latents`' size (aesthetic scores with requires_aesthetics_score), [negative; positive] under
  // guidance.
  Conditioning image_conditioning(const StableDiffusionXLRequest& r, const SDXLPromptEmbeds& embeds,
                                  const at::Tensor& latents, bool do_classifier_free_guidance) const;

 private:
  // The init image's encode runs between the prompt and the UNet.
  std::string component_after_prompt() const override { return "vae"; }
  // Ref: diffusers StableDiffusionXLImg2ImgPipeline._get_add_time_ids: (positive, negative).
  std::pair<at::Tensor, at::Tensor> get_add_time_ids(const StableDiffusionXLRequest& r, const ImageSize& original,
                                                     const ImageSize& target, const ImageSize& negative_original,
                                                     const ImageSize& negative_target, int64_t projection_dim,
                                                     at::ScalarType dtype) const;

  bool requires_aesthetics_score_;
};

}  // namespace nd
