// Mirrors diffusers StableDiffusionControlNetImg2ImgPipeline
// (pipelines/controlnet/pipeline_controlnet_img2img.py): SD 1.x/2.x image-to-image with one
// ControlNet guiding the UNet at every step: the image-to-image steps, with the ControlNet's
// residuals as one more input of the denoising loop. Python checks the arguments and preprocesses
// both images.
#pragma once

#include <memory>
#include <vector>

#include "pipelines/controlnet/pipeline_controlnet.h"
#include "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.h"

namespace nd {

struct StableDiffusionControlNetImg2ImgRequest : StableDiffusionImg2ImgRequest, ControlNetRequest {};

class StableDiffusionControlNetImg2ImgPipeline : public StableDiffusionImg2ImgPipeline {
 public:
  StableDiffusionControlNetImg2ImgPipeline(std::shared_ptr<CLIPTokenizer> tokenizer,
                                           std::shared_ptr<CLIPTextModel> text_encoder,
                                           std::shared_ptr<UNet2DConditionModel> unet,
                                           std::shared_ptr<ControlNetModel> controlnet,
                                           std::shared_ptr<AutoencoderKL> vae, std::shared_ptr<Scheduler> scheduler);

  // Returns latents (output_latents) or the decoded images in [-1, 1].
  PipelineResult run(const StableDiffusionControlNetImg2ImgRequest& request);
  std::vector<ModelCpuOffload::Component> offload_components() const {
    return controlnet_offload_components(text_encoder_, unet_, controlnet_, vae_);
  }

 private:
  std::shared_ptr<ControlNetModel> controlnet_;
};

}  // namespace nd
