#include "pipelines/controlnet/pipeline_controlnet_inpaint.h"

#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "pipelines/loop_inputs/controlnet_residuals.h"

namespace nd {

StableDiffusionControlNetInpaintPipeline::StableDiffusionControlNetInpaintPipeline(
    std::shared_ptr<CLIPTokenizer> tokenizer, std::shared_ptr<CLIPTextModel> text_encoder,
    std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<ControlNetModel> controlnet,
    std::shared_ptr<AutoencoderKL> vae, std::shared_ptr<Scheduler> scheduler)
    : StableDiffusionInpaintPipeline(std::move(tokenizer), std::move(text_encoder), std::move(unet), std::move(vae),
                                     std::move(scheduler)),
      controlnet_(std::move(controlnet)) {
  if (!controlnet_) throw ValueError("a ControlNet pipeline needs a controlnet");
}

PipelineResult StableDiffusionControlNetInpaintPipeline::run(const StableDiffusionControlNetInpaintRequest& r) {
  c10::NoGradGuard no_grad;
  // 3.-8. The prompt, the schedule cut by strength, the latents and the mask latents, as inpainting
  // (diffusers' ControlNet inpainting only refuses a cut that leaves no timestep).
  PreparedInpainting prepared = prepare_inpainting(r, /*counts_steps=*/false);
  // 4. + 7.2 The control image and the steps the ControlNet guides
  const ControlNetResiduals control = ControlNetResiduals::for_call(
      *controlnet_, r, prepared.call, r.num_images_per_prompt, r.guidance_scale, execution_device(), "control_image");
  // 8. Denoising loop, then the decode
  return denoise_inpainting(r, std::move(prepared), {&control});
}

}  // namespace nd
