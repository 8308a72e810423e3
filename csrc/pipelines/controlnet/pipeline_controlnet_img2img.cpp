#include "pipelines/controlnet/pipeline_controlnet_img2img.h"

#include "core/errors.h"

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

at::Tensor StableDiffusionControlNetImg2ImgPipeline::run(const StableDiffusionControlNetImg2ImgRequest& request) {
  return generate(request, controlnet_.get(), &request);
}

}  // namespace nd
