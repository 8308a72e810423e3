#include "pipelines/loop_inputs/concatenated_channels.h"

#include <ATen/ATen.h>

namespace nd {

void ConcatenatedChannels::add_to(UNetInputs& call, const LoopStep& step) const {
  const at::Tensor& channels = tensor_name_.empty() ? channels_ : step.tensors.at(tensor_name_);
  call.sample = at::cat({call.sample, channels}, 1);
}

}  // namespace nd
