// Mirrors diffusers StableDiffusionXLInpaintPipeline
// (pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_inpaint.py): SDXL image-to-image with
// a mask, for 9-channel inpainting UNets (the mask and masked-image latents as concatenated
// channels) and 4-channel ones (the original latents blended back outside the mask after every
// step), with denoising_start/denoising_end and the refiner's aesthetic-score conditioning.
#pragma once

#include "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.h"

namespace nd {

// callback_on_step_end tensors: latents, prompt_embeds, add_text_embeds, add_time_ids, mask,
// masked_image_latents.
struct StableDiffusionXLInpaintRequest : StableDiffusionXLRequest {
  StableDiffusionXLInpaintRequest() { strength = 0.9999; }
  at::Tensor mask_image;            // [B, 1, height, width], the mask processor's binarised output
  at::Tensor masked_image_latents;  // optional: latents or pixels of the masked image
};

class StableDiffusionXLInpaintPipeline : public StableDiffusionXLImg2ImgPipeline {
 public:
  using StableDiffusionXLImg2ImgPipeline::StableDiffusionXLImg2ImgPipeline;

  // Returns latents (output_latents) or the decoded images in [-1, 1].
  PipelineResult run(const StableDiffusionXLInpaintRequest& request);

 private:
  struct InpaintLatents {
    at::Tensor latents, noise, image_latents;
  };
  std::string component_after_prompt() const override { return "vae"; }
  InpaintLatents prepare_latents(const StableDiffusionXLInpaintRequest& r, const at::Tensor& timestep,
                                 int64_t batch_size, at::ScalarType dtype, bool return_image_latents);
};

}  // namespace nd
