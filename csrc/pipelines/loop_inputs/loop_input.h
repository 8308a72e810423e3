// What a pipeline adds to each UNet call of the denoising loop, as one small object per kind of
// input (this folder, one file each): channels concatenated to the model input, added conditions,
// a ControlNet's residuals. A new pipeline input is a new file here.
#pragma once

#include "models/unets/unet_2d_condition.h"
#include "pipelines/denoising_loop.h"

namespace nd {

class LoopInput {
 public:
  virtual ~LoopInput() = default;
  // Adds this input to step `step`'s UNet call. `call.sample` starts as the step's model input.
  virtual void add_to(UNetInputs& call, const LoopStep& step) const = 0;
};

}  // namespace nd
