// Mirrors diffusers StableDiffusionControlNetPipeline (pipelines/controlnet/pipeline_controlnet.py):
// SD 1.x/2.x text-to-image with one ControlNet guiding the UNet at every step: the text-to-image
// steps, with the ControlNet's residuals as one more input of the denoising loop. Python checks the
// arguments and preprocesses the control image.
#pragma once

#include <memory>
#include <vector>

#include "models/controlnets/controlnet.h"
#include "pipelines/controlnet/controlnet_utils.h"
#include "pipelines/stable_diffusion/pipeline_stable_diffusion.h"

namespace nd {

struct StableDiffusionControlNetRequest : StableDiffusionRequest, ControlNetRequest {};

// Ref: diffusers model_cpu_offload_seq = "text_encoder->unet->vae" of the ControlNet pipelines. The
// loop runs the UNet and the ControlNet at every step, so they move as one component, "unet", and
// come to the device and go home together (diffusers streams the ControlNet layer by layer beside
// its sequence).
std::vector<OffloadComponent> controlnet_offload_components(const std::shared_ptr<CLIPTextModel>& text_encoder,
                                                            const std::shared_ptr<UNet2DConditionModel>& unet,
                                                            const std::shared_ptr<ControlNetModel>& controlnet,
                                                            const std::shared_ptr<AutoencoderKL>& vae);

class StableDiffusionControlNetPipeline : public StableDiffusionPipeline {
 public:
  StableDiffusionControlNetPipeline(std::shared_ptr<CLIPTokenizer> tokenizer,
                                    std::shared_ptr<CLIPTextModel> text_encoder,
                                    std::shared_ptr<UNet2DConditionModel> unet,
                                    std::shared_ptr<ControlNetModel> controlnet, std::shared_ptr<AutoencoderKL> vae,
                                    std::shared_ptr<Scheduler> scheduler);

  // Returns latents (output_latents) or the decoded images in [-1, 1]; height and width are the
  // control image's.
  PipelineResult run(const StableDiffusionControlNetRequest& request);
  std::vector<ModelCpuOffload::Component> offload_components() const {
    return controlnet_offload_components(text_encoder_, unet_, controlnet_, vae_);
  }

 private:
  std::shared_ptr<ControlNetModel> controlnet_;
};

}  // namespace nd
