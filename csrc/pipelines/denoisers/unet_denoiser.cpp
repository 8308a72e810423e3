#include "pipelines/denoisers/unet_denoiser.h"

#include "offload/streaming.h"

namespace nd {

UNetDenoiser::UNetDenoiser(const UNet2DConditionModel& unet, std::string encoder_states,
                           std::vector<const LoopInput*> inputs)
    : unet_(unet), encoder_states_(std::move(encoder_states)), inputs_(std::move(inputs)) {}

at::Tensor UNetDenoiser::operator()(const LoopStep& step) {
  UNetInputs call;
  call.sample = step.model_input;
  call.timestep = step.timestep;
  if (!encoder_states_.empty()) call.encoder_hidden_states = step.tensors.at(encoder_states_);
  for (const LoopInput* input : inputs_) input->add_to(call, step);
  call.projected = projections_for(call);
  return unet_.forward(call);
}

const EncoderKeyValues* UNetDenoiser::projections_for(const UNetInputs& call) {
  if (streaming_active()) return nullptr;
  const at::Tensor& states = call.encoder_hidden_states;
  const at::Tensor& image_embeds = call.added.image_embeds;
  if (!projected_ || !projected_states_.is_same(states) || !projected_image_embeds_.is_same(image_embeds)) {
    UNetAddedConditions image_only;
    image_only.image_embeds = image_embeds;
    projected_ = unet_.project_encoder_states(states, image_only);
    projected_states_ = states;
    projected_image_embeds_ = image_embeds;
  }
  return &*projected_;
}

}  // namespace nd
