#include "pipelines/loop_inputs/controlnet_residuals.h"

#include <ATen/ATen.h>

#include "core/errors.h"
#include "pipelines/guiders/classifier_free_guidance.h"

namespace nd {

ControlNetResiduals::ControlNetResiduals(const ControlNetModel& controlnet, const ControlNetRequest& r,
                                       int64_t batch_size, int64_t num_images_per_prompt,
                                       bool do_classifier_free_guidance, int64_t num_timesteps, c10::Device device,
                                       std::string tensor_name)
    : controlnet_(controlnet),
      tensor_name_(std::move(tensor_name)),
      conditioning_scale_(r.controlnet_conditioning_scale),
      // Ref: diffusers: guess_mode = guess_mode or global_pool_conditions.
      guess_mode_(r.guess_mode || controlnet.config().global_pool_conditions),
      cfg_(do_classifier_free_guidance) {
  const at::Tensor& image = r.control_image;
  if (!image.defined() || image.dim() != 4) throw ValueError("`image` (the control image) must be a 4-d tensor");
  const int64_t prompts = batch_size / num_images_per_prompt;
  if (image.size(0) != 1 && image.size(0) != prompts) {
    throw ValueError("If image batch size is not 1, image batch size must be same as prompt batch size. image batch "
                     "size: " + std::to_string(image.size(0)) + ", prompt batch size: " + std::to_string(prompts));
  }
  if (r.control_guidance_start >= r.control_guidance_end) {
    throw ValueError("control guidance start: " + std::to_string(r.control_guidance_start) +
                     " cannot be larger or equal to control guidance end: " + std::to_string(r.control_guidance_end) +
                     ".");
  }
  // Ref: diffusers prepare_control_image: one image serves the whole batch, else each prompt's
  // image serves its num_images_per_prompt copies.
  const int64_t repeat_by = image.size(0) == 1 ? batch_size : num_images_per_prompt;
  image_ = image.repeat_interleave(repeat_by, 0).to(device, controlnet.dtype());
  if (cfg_ && !guess_mode_) image_ = at::cat({image_, image_}, 0);

  keep_.reserve(static_cast<std::size_t>(num_timesteps));
  for (int64_t i = 0; i < num_timesteps; ++i) {
    const double n = static_cast<double>(num_timesteps);
    const bool outside = static_cast<double>(i) / n < r.control_guidance_start ||
                         static_cast<double>(i + 1) / n > r.control_guidance_end;
    keep_.push_back(outside ? 0.0 : 1.0);
  }
}

ControlNetResiduals ControlNetResiduals::for_call(const ControlNetModel& controlnet, const ControlNetRequest& request,
                                                  PreparedCall& call, int64_t num_images_per_prompt,
                                                  double guidance_scale, c10::Device device,
                                                  const std::string& tensor_name) {
  ControlNetResiduals control(controlnet, request, call.batch_size, num_images_per_prompt,
                              does_classifier_free_guidance(guidance_scale), call.window.timesteps.size(0), device,
                              tensor_name);
  call.tensors[tensor_name] = control.image();
  return control;
}

void ControlNetResiduals::add_to(UNetInputs& call, const LoopStep& step) const {
  const double cond_scale = conditioning_scale_ * keep_.at(static_cast<std::size_t>(step.index));
  if (cond_scale == 0.0) return;
  // Ref: diffusers: in guess mode under guidance the ControlNet sees only the conditional half.
  const bool conditional_only = guess_mode_ && cfg_;
  const at::Tensor& prompt_embeds = step.tensors.at("prompt_embeds");
  const at::Tensor control_input =
      conditional_only ? step.scheduler.scale_model_input(step.latents, step.timestep_host) : step.model_input;
  const at::Tensor embeds = conditional_only ? prompt_embeds.chunk(2)[1] : prompt_embeds;
  UNetControlResiduals out = controlnet_.forward(control_input, step.timestep, embeds,
                                                 step.tensors.at(tensor_name_), cond_scale, guess_mode_);
  if (conditional_only) {
    // The unconditional half gets no residual.
    for (at::Tensor& residual : out.down) residual = at::cat({at::zeros_like(residual), residual}, 0);
    out.mid = at::cat({at::zeros_like(out.mid), out.mid}, 0);
  }
  call.control = std::move(out);
}

}  // namespace nd
