#include "pipelines/controlnet/pipeline_controlnet.h"

#include "core/errors.h"

namespace nd {

std::vector<OffloadComponent> controlnet_offload_components(const std::shared_ptr<CLIPTextModel>& text_encoder,
                                                            const std::shared_ptr<UNet2DConditionModel>& unet,
                                                            const std::shared_ptr<ControlNetModel>& controlnet,
                                                            const std::shared_ptr<AutoencoderKL>& vae) {
  std::vector<OffloadComponent> components;
  add_streamed_component(components, "text_encoder", text_encoder);
  components.push_back({"unet",
                        [unet, controlnet](const ParameterFn& fn) {
                          unet->apply(fn);
                          controlnet->apply(fn);
                        },
                        [unet, controlnet](const UnitVisitor& visit) {
                          unet->for_each_unit(visit);
                          controlnet->for_each_unit(visit);
                        }});
  add_streamed_component(components, "vae", vae);
  return components;
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

}  // namespace nd
