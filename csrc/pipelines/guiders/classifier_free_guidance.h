// Mirrors diffusers' guiders/classifier_free_guidance.py as the pipelines inline it: the latents
// twice ([unconditional; conditional]), then uncond + scale * (cond - uncond), and Lin et al.'s
// rescale (rescale_noise_cfg) when guidance_rescale > 0.
#pragma once

#include <memory>

#include "pipelines/denoising_loop.h"

namespace nd {

class ClassifierFreeGuidance : public Guider {
 public:
  explicit ClassifierFreeGuidance(double guidance_scale, double guidance_rescale = 0.0)
      : guidance_scale_(guidance_scale), guidance_rescale_(guidance_rescale) {}
  at::Tensor prepare(const at::Tensor& latents) const override;
  at::Tensor combine(const at::Tensor& prediction) const override;

 private:
  double guidance_scale_;
  double guidance_rescale_;
};

// Ref: diffusers do_classifier_free_guidance: guidance_scale > 1 (the UNets here have no
// time_cond_proj_dim).
bool does_classifier_free_guidance(double guidance_scale);

// ClassifierFreeGuidance when it applies, else NoGuidance.
std::unique_ptr<Guider> classifier_free_guidance_or_none(double guidance_scale, double guidance_rescale = 0.0);

// Ref: diffusers rescale_noise_cfg (Lin et al. 2023, section 3.4).
at::Tensor rescale_noise_cfg(const at::Tensor& noise_cfg, const at::Tensor& noise_pred_text, double guidance_rescale);

}  // namespace nd
