// What diffusers' StableDiffusionControlNetPipeline and StableDiffusionControlNetImg2ImgPipeline
// share (pipelines/controlnet/): the ControlNet's arguments, the control image's preparation
// (prepare_control_image), which steps the ControlNet guides (controlnet_keep), and its inference
// inside the denoising loop.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <optional>
#include <string>
#include <vector>

#include "models/controlnets/controlnet.h"
#include "schedulers/scheduling_utils.h"

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

// One call's ControlNet guidance, prepared once before the loop.
class ControlNetGuidance {
 public:
  // Ref: diffusers prepare_control_image and "7.1 Create tensor stating which controlnets to keep".
  // `batch_size` counts every image (prompts x num_images_per_prompt). `tensor_name` is the
  // prepared image's name among the step callback's tensors ("image" or "control_image").
  ControlNetGuidance(const ControlNetModel& controlnet, const ControlNetRequest& request, int64_t batch_size,
                     int64_t num_images_per_prompt, bool do_classifier_free_guidance, int64_t num_timesteps,
                     c10::Device device, std::string tensor_name);

  // The prepared conditioning image: repeated to the batch, doubled under guidance unless in guess mode.
  const at::Tensor& image() const { return image_; }
  const std::string& tensor_name() const { return tensor_name_; }

  // The residuals for step i, or none when the ControlNet does not guide that step (its scale
  // would be 0: diffusers still runs it and adds zeros, the same sums).
  // model_input: the UNet's (scaled, doubled under guidance); latents: the loop's, unscaled;
  // prompt_embeds: [negative; positive] under guidance; control_image: image(), or what a step
  // callback put in its place.
  std::optional<UNetControlResiduals> residuals(int64_t i, const at::Tensor& model_input, const at::Tensor& latents,
                                                const at::Tensor& t, const at::Tensor& t_host,
                                                const at::Tensor& prompt_embeds, const at::Tensor& control_image,
                                                Scheduler& scheduler) const;

 private:
  const ControlNetModel& controlnet_;
  at::Tensor image_;
  std::string tensor_name_;
  double conditioning_scale_;
  bool guess_mode_;
  bool cfg_;
  std::vector<double> keep_;  // per step: 1 while the ControlNet guides, else 0
};

}  // namespace nd
