// The ControlNet arguments diffusers' StableDiffusionControlNetPipeline and
// StableDiffusionControlNetImg2ImgPipeline share (pipelines/controlnet/).
#pragma once

#include <ATen/core/Tensor.h>

namespace nd {

struct ControlNetRequest {
  // diffusers' control_image_processor output: [1 or batch, C, H, W] in [0, 1].
  at::Tensor control_image;
  double controlnet_conditioning_scale = 1.0;
  bool guess_mode = false;
  // The fraction of the steps (of the part of the schedule the loop runs) the ControlNet guides.
  double control_guidance_start = 0.0;
  double control_guidance_end = 1.0;
};

}  // namespace nd
