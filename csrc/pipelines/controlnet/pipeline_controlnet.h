// Mirrors diffusers StableDiffusionControlNetPipeline (pipelines/controlnet/pipeline_controlnet.py):
// SD 1.x/2.x text-to-image with one ControlNet guiding the UNet at every step, inside the engine's
// denoising loop. Python checks the arguments and preprocesses the control image.
#pragma once

#include <memory>
#include <vector>

#include "models/controlnets/controlnet.h"
#include "pipelines/controlnet/controlnet_utils.h"
#include "pipelines/stable_diffusion/pipeline_stable_diffusion.h"

namespace nd {

struct StableDiffusionControlNetRequest : StableDiffusionRequest, ControlNetRequest {};

// The offload component the ControlNet pipelines move as "unet": the loop runs the UNet and the
// ControlNet at every step, so they come to the device and go home together (diffusers streams the
// ControlNet layer by layer beside its model_cpu_offload_seq).
OffloadComponent unet_with_controlnet(const std::shared_ptr<UNet2DConditionModel>& unet,
                                      const std::shared_ptr<ControlNetModel>& controlnet);

class StableDiffusionControlNetPipeline : public StableDiffusionPipeline {
 public:
  StableDiffusionControlNetPipeline(std::shared_ptr<CLIPTokenizer> tokenizer,
                                    std::shared_ptr<CLIPTextModel> text_encoder,
                                    std::shared_ptr<UNet2DConditionModel> unet,
                                    std::shared_ptr<ControlNetModel> controlnet, std::shared_ptr<AutoencoderKL> vae,
                                    std::shared_ptr<Scheduler> scheduler);

  // Returns latents (output_latents) or the decoded images in [-1, 1]; height and width are the
  // control image's.
  at::Tensor run(const StableDiffusionControlNetRequest& request);
  // Ref: diffusers model_cpu_offload_seq = "text_encoder->unet->vae", the ControlNet with the UNet.
  std::vector<ModelCpuOffload::Component> offload_components() const;

 private:
  std::shared_ptr<ControlNetModel> controlnet_;
};

}  // namespace nd
