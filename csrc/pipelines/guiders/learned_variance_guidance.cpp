#include "pipelines/guiders/learned_variance_guidance.h"

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "core/errors.h"

namespace nd {

at::Tensor LearnedVarianceGuidance::prepare(const at::Tensor& latents) const {
  return guided() ? at::cat({latents, latents}, 0) : latents;
}

at::Tensor LearnedVarianceGuidance::combine(const at::Tensor& prediction) const {
  at::Tensor out = prediction;
  if (guided()) {
    const std::vector<at::Tensor> halves = prediction.split(latent_channels_, 1);
    if (halves.size() != 2) {
      throw ValueError("the UNet must predict noise and variance (" + std::to_string(2 * latent_channels_) +
                       " channels), got " + std::to_string(prediction.size(1)));
    }
    const std::vector<at::Tensor> noise = halves[0].chunk(2, 0);
    const at::Tensor variance_text = halves[1].chunk(2, 0)[1];
    out = at::cat({noise[0] + guidance_scale_ * (noise[1] - noise[0]), variance_text}, 1);
  }
  if (!scheduler_learns_variance_) out = out.split(latent_channels_, 1)[0];
  return out;
}

}  // namespace nd
