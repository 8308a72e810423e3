// Mirrors diffusers StableDiffusionUpscalePipeline
// (pipelines/stable_diffusion/pipeline_stable_diffusion_upscale.py), the x4 upscaler: the
// low-resolution image, noised to `noise_level` by a second (DDPM) scheduler, rides along every UNet
// call as extra input channels (ConcatenatedChannels), its noise level as the UNet's class label
// (AddedConditions), and the latents start from pure noise at the image's own size. Python checks
// arguments and converts images; nothing here calls back into Python.
#pragma once

#include <memory>

#include "pipelines/stable_diffusion/pipeline_stable_diffusion.h"

namespace nd {

struct StableDiffusionUpscaleRequest : StableDiffusionRequest {
  at::Tensor image;  // [B, 3, h, w] in [-1, 1]: the image to upscale
  int64_t noise_level = 20;
};

class StableDiffusionUpscalePipeline : public StableDiffusionPipeline {
 public:
  StableDiffusionUpscalePipeline(std::shared_ptr<CLIPTokenizer> tokenizer, std::shared_ptr<CLIPTextModel> text_encoder,
                                 std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<AutoencoderKL> vae,
                                 std::shared_ptr<Scheduler> low_res_scheduler, std::shared_ptr<Scheduler> scheduler);

  // Returns latents (output_latents) or the decoded images in [-1, 1], vae_scale_factor times larger.
  PipelineResult run(const StableDiffusionUpscaleRequest& request);

 private:
  // Step 5.: the image noised to noise_level, repeated to the model batch.
  at::Tensor noised_image(const StableDiffusionUpscaleRequest& r, int64_t batch_multiplier,
                          at::ScalarType dtype) const;

  std::shared_ptr<Scheduler> low_res_scheduler_;
};

}  // namespace nd
