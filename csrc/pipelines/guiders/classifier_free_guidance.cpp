#include "pipelines/guiders/classifier_free_guidance.h"

#include <ATen/ATen.h>

#include <vector>

#include "pipelines/guiders/no_guidance.h"

namespace nd {

at::Tensor ClassifierFreeGuidance::prepare(const at::Tensor& latents) const { return at::cat({latents, latents}, 0); }

at::Tensor ClassifierFreeGuidance::combine(const at::Tensor& prediction) const {
  const std::vector<at::Tensor> parts = prediction.chunk(2, 0);
  at::Tensor guided = parts[0] + guidance_scale_ * (parts[1] - parts[0]);
  if (guidance_rescale_ > 0.0) guided = rescale_noise_cfg(guided, parts[1], guidance_rescale_);
  return guided;
}

bool does_classifier_free_guidance(double guidance_scale) { return guidance_scale > 1.0; }

std::unique_ptr<Guider> classifier_free_guidance_or_none(double guidance_scale, double guidance_rescale) {
  if (!does_classifier_free_guidance(guidance_scale)) return std::make_unique<NoGuidance>();
  return std::make_unique<ClassifierFreeGuidance>(guidance_scale, guidance_rescale);
}

at::Tensor rescale_noise_cfg(const at::Tensor& noise_cfg, const at::Tensor& noise_pred_text, double guidance_rescale) {
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < noise_pred_text.dim(); ++d) dims.push_back(d);
  const at::Tensor std_text = noise_pred_text.std(dims, /*unbiased=*/true, /*keepdim=*/true);
  const at::Tensor std_cfg = noise_cfg.std(dims, /*unbiased=*/true, /*keepdim=*/true);
  const at::Tensor rescaled = noise_cfg * (std_text / std_cfg);
  return guidance_rescale * rescaled + (1 - guidance_rescale) * noise_cfg;
}

}  // namespace nd
