// Kandinsky 2.2's decoder guidance (diffusers KandinskyV22*Pipeline.__call__): the UNet predicts
// noise and variance stacked on the channels; guidance mixes only the noise halves and keeps the
// conditional variance, and the variance is dropped when the scheduler does not learn it.
#pragma once

#include <cstdint>

#include "pipelines/denoising_loop.h"

namespace nd {

class LearnedVarianceGuidance : public Guider {
 public:
  // guidance_scale <= 1: no guidance (the latents once), only the variance handling.
  LearnedVarianceGuidance(double guidance_scale, int64_t latent_channels, bool scheduler_learns_variance)
      : guidance_scale_(guidance_scale), latent_channels_(latent_channels),
        scheduler_learns_variance_(scheduler_learns_variance) {}
  at::Tensor prepare(const at::Tensor& latents) const override;
  at::Tensor combine(const at::Tensor& prediction) const override;

 private:
  bool guided() const { return guidance_scale_ > 1.0; }

  double guidance_scale_;
  int64_t latent_channels_;
  bool scheduler_learns_variance_;
};

}  // namespace nd
