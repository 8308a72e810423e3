// Inpainting with an ordinary 4-channel UNet (Ref: diffusers StableDiffusionInpaintPipeline.__call__,
// `if num_channels_unet == 4`): after every step, outside the mask the latents are replaced by the
// original image's latents noised to the next timestep with the call's initial noise, and by the
// clean latents after the last step.
#pragma once

#include <ATen/core/Tensor.h>

#include "pipelines/denoising_loop.h"

namespace nd {

class InpaintMaskBlend : public AfterStepHook {
 public:
  // `image_latents` and `noise`: [B, C, h, w]; `timesteps`: the loop's window, on the host. The
  // mask is read from the step tensor "mask" (a callback may replace it), whose first half is the
  // mask of the unconditional batch when `guided`.
  InpaintMaskBlend(at::Tensor image_latents, at::Tensor noise, at::Tensor timesteps, bool guided)
      : image_latents_(std::move(image_latents)), noise_(std::move(noise)), timesteps_(std::move(timesteps)),
        guided_(guided) {}

  at::Tensor after_step(const LoopStep& step, const at::Tensor& latents) const override;

 private:
  at::Tensor image_latents_;
  at::Tensor noise_;
  at::Tensor timesteps_;
  bool guided_;
};

}  // namespace nd
