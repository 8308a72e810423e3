#include "pipelines/denoisers/prior_denoiser.h"

namespace nd {

at::Tensor PriorDenoiser::operator()(const LoopStep& step) {
  return prior_.forward(step.model_input, step.timestep, step.tensors.at("prompt_embeds"),
                        step.tensors.at("text_encoder_hidden_states"), step.tensors.at("text_mask"));
}

}  // namespace nd
