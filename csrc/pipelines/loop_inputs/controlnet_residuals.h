// A ControlNet's residuals as an input of the denoising loop, as diffusers'
// StableDiffusionControlNet(Img2Img)Pipeline compute them: the control image's preparation
// (prepare_control_image), which steps the ControlNet guides (controlnet_keep), and its inference
// at each step, added to the UNet's skip connections.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>
#include <vector>

#include "models/controlnets/controlnet.h"
#include "pipelines/controlnet/controlnet_utils.h"
#include "pipelines/loop_inputs/loop_input.h"
#include "pipelines/stable_diffusion/pipeline_stable_diffusion.h"

namespace nd {

// One call's ControlNet guidance, prepared once before the loop.
class ControlNetResiduals : public LoopInput {
 public:
  // Ref: diffusers prepare_control_image and "7.1 Create tensor stating which controlnets to keep".
  // `batch_size` counts every image (prompts x num_images_per_prompt). `tensor_name` is the
  // prepared image's name among the step callback's tensors ("image" or "control_image").
  ControlNetResiduals(const ControlNetModel& controlnet, const ControlNetRequest& request, int64_t batch_size,
                     int64_t num_images_per_prompt, bool do_classifier_free_guidance, int64_t num_timesteps,
                     c10::Device device, std::string tensor_name);

  // Over a prepared SD 1.x/2.x call (steps 4. and 7.1 of diffusers' ControlNet pipelines): its
  // control image joins the call's step tensors as `tensor_name`.
  static ControlNetResiduals for_call(const ControlNetModel& controlnet, const ControlNetRequest& request,
                                      PreparedCall& call, int64_t num_images_per_prompt, double guidance_scale,
                                      c10::Device device, const std::string& tensor_name);

  // The prepared conditioning image: repeated to the batch, doubled under guidance unless in guess mode.
  const at::Tensor& image() const { return image_; }
  const std::string& tensor_name() const { return tensor_name_; }

  // The residuals of the step, from the step's model input (before any concatenated channels),
  // its prompt embeddings ([negative; positive] under guidance) and the step tensor tensor_name()
  // (image(), or what a step callback put in its place). None when the ControlNet does not guide
  // that step (its scale would be 0: diffusers still runs it and adds zeros, the same sums).
  void add_to(UNetInputs& call, const LoopStep& step) const override;

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
