// Mirrors diffusers StableDiffusionControlNetInpaintPipeline
// (pipelines/controlnet/pipeline_controlnet_inpaint.py): SD 1.x/2.x inpainting with one ControlNet.
// The inpainting steps, with the ControlNet's residuals as one more loop input; the ControlNet sees
// the 4-channel latents, the mask channels are appended for the UNet only. Python checks the
// arguments and preprocesses the image, the mask and the control image.
#pragma once

#include <memory>
#include <vector>

#include "pipelines/controlnet/pipeline_controlnet.h"
#include "pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.h"

namespace nd {

// callback_on_step_end tensors: latents, prompt_embeds, negative_prompt_embeds, control_image, mask,
// masked_image_latents.
struct StableDiffusionControlNetInpaintRequest : StableDiffusionInpaintRequest, ControlNetRequest {};

class StableDiffusionControlNetInpaintPipeline : public StableDiffusionInpaintPipeline {
 public:
  StableDiffusionControlNetInpaintPipeline(std::shared_ptr<CLIPTokenizer> tokenizer,
                                           std::shared_ptr<CLIPTextModel> text_encoder,
                                           std::shared_ptr<UNet2DConditionModel> unet,
                                           std::shared_ptr<ControlNetModel> controlnet,
                                           std::shared_ptr<AutoencoderKL> vae, std::shared_ptr<Scheduler> scheduler);

  // Returns latents (output_latents) or the decoded images in [-1, 1].
  PipelineResult run(const StableDiffusionControlNetInpaintRequest& request);
  std::vector<ModelCpuOffload::Component> offload_components() const {
    return controlnet_offload_components(text_encoder_, unet_, controlnet_, vae_);
  }

 private:
  std::shared_ptr<ControlNetModel> controlnet_;
};

}  // namespace nd
