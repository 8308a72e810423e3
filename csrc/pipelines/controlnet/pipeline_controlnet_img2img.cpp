#include "pipelines/controlnet/pipeline_controlnet_img2img.h"

#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "pipelines/loop_inputs/controlnet_residuals.h"

namespace nd {

StableDiffusionControlNetImg2ImgPipeline::StableDiffusionControlNetImg2ImgPipeline(
    std::shared_ptr<CLIPTokenizer> tokenizer, std::shared_ptr<CLIPTextModel> text_encoder,
    std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<ControlNetModel> controlnet,
    std::shared_ptr<AutoencoderKL> vae, std::shared_ptr<Scheduler> scheduler)
    : StableDiffusionImg2ImgPipeline(std::move(tokenizer), std::move(text_encoder), std::move(unet), std::move(vae),
                                     std::move(scheduler)),
      controlnet_(std::move(controlnet)) {
  if (!controlnet_) throw ValueError("a ControlNet pipeline needs a controlnet");
}

PipelineResult StableDiffusionControlNetImg2ImgPipeline::run(const StableDiffusionControlNetImg2ImgRequest& r) {
  c10::NoGradGuard no_grad;
  // 3.-6. The prompt, the schedule cut by strength and the noised image latents, as image-to-image
  PreparedCall call = prepare_image_to_image(r);
  // 4. + 7.1 The control image and the steps the ControlNet guides
  const ControlNetResiduals control = ControlNetResiduals::for_call(
      *controlnet_, r, call, r.num_images_per_prompt, r.guidance_scale, execution_device(), "control_image");
  // 8. Denoising loop, then the decode
  return denoise(r, std::move(call), {&control});
}

}  // namespace nd
