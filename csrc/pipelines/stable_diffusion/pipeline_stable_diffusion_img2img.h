// Mirrors diffusers StableDiffusionImg2ImgPipeline
// (pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py): prompt encoding, the
// strength cut of the schedule, latent preparation, the denoising loop and the VAE decode, all
// in the engine. Python checks arguments and converts images; nothing here calls back into Python
// unless the caller installs a step callback.
#pragma once

#include "pipelines/stable_diffusion/pipeline_stable_diffusion.h"

namespace nd {

struct StableDiffusionImg2ImgRequest : StableDiffusionRequest {
  at::Tensor image;  // [B, 3, H, W] in [-1, 1], or [B, latent_channels, h, w] latents
  double strength = 0.8;
};

class StableDiffusionImg2ImgPipeline : public StableDiffusionPipeline {
 public:
  using StableDiffusionPipeline::StableDiffusionPipeline;

  // Returns latents (output_latents) or the decoded images in [-1, 1] ([B, 3, H, W]).
  PipelineResult run(const StableDiffusionImg2ImgRequest& request);

 protected:
  // Steps 3.-6.: the prompt, the schedule cut by strength, the noised image latents.
  PreparedCall prepare_image_to_image(const StableDiffusionImg2ImgRequest& r);

 private:
  // The init image's encode runs between the prompt and the UNet.
  std::string component_after_prompt() const override { return "vae"; }
  at::Tensor prepare_latents(const at::Tensor& image, const at::Tensor& timestep, int64_t batch_size,
                             at::ScalarType dtype, const std::vector<at::Generator>& generators);
};

}  // namespace nd
