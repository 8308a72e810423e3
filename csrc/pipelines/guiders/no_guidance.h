// The denoiser's prediction used as it is: guidance_scale <= 1 (diffusers'
// do_classifier_free_guidance is false).
#pragma once

#include "pipelines/denoising_loop.h"

namespace nd {

class NoGuidance : public Guider {
 public:
  at::Tensor prepare(const at::Tensor& latents) const override { return latents; }
  at::Tensor combine(const at::Tensor& prediction) const override { return prediction; }
};

}  // namespace nd
