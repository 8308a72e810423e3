#include "pipelines/controlnet/pipeline_controlnet.h"

#include "core/errors.h"

namespace nd {

OffloadComponent unet_with_controlnet(const std::shared_ptr<UNet2DConditionModel>& unet,
                                      const std::shared_ptr<ControlNetModel>& controlnet) {
  return {"unet",
          [unet, controlnet](const ParameterFn& fn) {
            unet->apply(fn);
            controlnet->apply(fn);
          },
          [unet, controlnet](const UnitVisitor& visit) {
            unet->for_each_unit(visit);
            controlnet->for_each_unit(visit);
          }};
}

StableDiffusionControlNetPipeline::StableDiffusionControlNetPipeline(
    std::shared_ptr<CLIPTokenizer> tokenizer, std::shared_ptr<CLIPTextModel> text_encoder,
    std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<ControlNetModel> controlnet,
    std::shared_ptr<AutoencoderKL> vae, std::shared_ptr<Scheduler> scheduler)
    : StableDiffusionPipeline(std::move(tokenizer), std::move(text_encoder), std::move(unet), std::move(vae),
                              std::move(scheduler)),
      controlnet_(std::move(controlnet)) {
  if (!controlnet_) throw ValueError("a ControlNet pipeline needs a controlnet");
}

at::Tensor StableDiffusionControlNetPipeline::run(const StableDiffusionControlNetRequest& request) {
  return generate(request, controlnet_.get(), &request);
}

std::vector<ModelCpuOffload::Component> StableDiffusionControlNetPipeline::offload_components() const {
  std::vector<ModelCpuOffload::Component> components;
  add_streamed_component(components, "text_encoder", text_encoder_);
  components.push_back(unet_with_controlnet(unet_, controlnet_));
  add_streamed_component(components, "vae", vae_);
  return components;
}

}  // namespace nd
