#include "pipelines/after_step/inpaint_mask_blend.h"

#include <ATen/ATen.h>

namespace nd {

at::Tensor InpaintMaskBlend::after_step(const LoopStep& step, const at::Tensor& latents) const {
  const at::Tensor& mask = step.tensors.at("mask");
  // Ref: diffusers: init_mask, _ = mask.chunk(2) under guidance.
  const at::Tensor init_mask = guided_ ? mask.chunk(2, 0)[0] : mask;
  at::Tensor init_latents_proper = image_latents_;
  if (step.index + 1 < timesteps_.size(0)) {
    init_latents_proper = step.scheduler.add_noise(image_latents_, noise_, timesteps_.narrow(0, step.index + 1, 1));
  }
  return (1 - init_mask) * init_latents_proper + init_mask * latents;
}

}  // namespace nd
