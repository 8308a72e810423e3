// Channels appended to the UNet's model input at every step, after the scheduler's scaling (Ref:
// diffusers: torch.cat([latent_model_input, image], dim=1)): the x4 upscaler's noised
// low-resolution image; next, the inpainting mask and masked-image latents, depth maps and the x2
// upscaler's latents.
#pragma once

#include <string>

#include "pipelines/loop_inputs/loop_input.h"

namespace nd {

class ConcatenatedChannels : public LoopInput {
 public:
  // `channels`: [model batch, C, h, w], the model input's batch and size.
  explicit ConcatenatedChannels(at::Tensor channels) : channels_(std::move(channels)) {}
  // The appended channels are the step tensor `tensor_name`: a step callback may replace them.
  explicit ConcatenatedChannels(std::string tensor_name) : tensor_name_(std::move(tensor_name)) {}
  void add_to(UNetInputs& call, const LoopStep& step) const override;

 private:
  at::Tensor channels_;
  std::string tensor_name_;
};

}  // namespace nd
