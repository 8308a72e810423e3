// The one denoising loop of the engine: every pipeline prepares its latents, its denoiser, its
// guider and what it adds to the denoiser call, then runs this. See csrc/pipelines/README.md for
// the loop and its seams.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/progress_bar.h"
#include "pipelines/pipeline_utils.h"
#include "schedulers/scheduling_utils.h"

namespace nd {

class PipelineOffload;

// What the denoiser, the loop inputs and the after-step hooks see of step `index`.
struct LoopStep {
  int64_t index;
  const at::Tensor& timestep;       // on the execution device
  const at::Tensor& timestep_host;  // the same value on the host: schedulers read it without a sync
  const at::Tensor& latents;        // the loop's latents, one per image, unscaled
  const at::Tensor& model_input;    // the guider's batch of latents, scaled by the scheduler
  const StepTensors& tensors;       // the callback tensors, by diffusers' names
  Scheduler& scheduler;
};

// The model the loop asks for a prediction at every step (the UNet with its inputs, the prior).
class Denoiser {
 public:
  virtual ~Denoiser() = default;
  virtual at::Tensor operator()(const LoopStep& step) = 0;
  // A step callback ran: it may have changed, in place, tensors the denoiser derived state from.
  virtual void after_step_callback() {}
};

// How the denoiser's batch is made from the latents and its prediction turned into one per image
// (csrc/pipelines/guiders/).
class Guider {
 public:
  virtual ~Guider() = default;
  virtual at::Tensor prepare(const at::Tensor& latents) const = 0;
  virtual at::Tensor combine(const at::Tensor& prediction) const = 0;
};

// Runs after the scheduler step, before the callback: may replace the latents (inpainting's blend
// of the re-noised original outside the mask).
class AfterStepHook {
 public:
  virtual ~AfterStepHook() = default;
  virtual at::Tensor after_step(const LoopStep& step, const at::Tensor& latents) const = 0;
};

// diffusers' deprecated `callback(step, timestep, latents)`, called every `callback_steps` steps at
// which the progress bar advances, with the step index divided by the scheduler's order.
using LegacyStepCallback = std::function<void(int64_t step, const at::Tensor& timestep, const at::Tensor& latents)>;

// What every pipeline request says about its denoising loop, by diffusers' argument names.
struct LoopOptions {
  std::vector<at::Generator> generators;  // none, one, or one per image
  double eta = 0.0;                       // DDIM's η (the SD family's argument)
  ProgressBarOptions progress_bar;        // set_progress_bar_config
  StepCallback callback_on_step_end;
  LegacyStepCallback callback;  // diffusers' deprecated callback / callback_steps
  int64_t callback_steps = 1;
};

struct DenoisingLoopSpec {
  TimestepWindow window;
  Scheduler* scheduler = nullptr;
  Denoiser* denoiser = nullptr;
  const Guider* guider = nullptr;
  std::vector<const AfterStepHook*> after_step;
  StepOptions step_options;
  // diffusers' SD-family loops scale the model input; Kandinsky's call the UNet on it as it is.
  bool scales_model_input = true;
  // UnCLIP's step goes to the next timestep of the schedule, which the loop passes.
  bool passes_prev_timestep = false;
  // Kandinsky's loops advance their bar at every timestep (progress_bar(timesteps)); the SD family
  // once per scheduler order after the warm-up steps.
  bool progress_per_timestep = false;
  ProgressBarOptions progress_bar;  // set_progress_bar_config
  StepCallback callback_on_step_end;
  LegacyStepCallback callback;
  int64_t callback_steps = 1;
  // The component the denoiser's weights belong to, brought to the device before the first step.
  PipelineOffload* offload = nullptr;
  std::string component = "unet";
};

struct DenoisingLoopResult {
  at::Tensor latents;
  int64_t num_timesteps = 0;  // diffusers' pipeline.num_timesteps: the length of the window run
  bool interrupted = false;
};

// A spec over `window` with the request's options; the caller sets the pipeline-specific switches.
DenoisingLoopSpec loop_spec(const LoopOptions& options, TimestepWindow window, Scheduler& scheduler,
                            Denoiser& denoiser, const Guider& guider, PipelineOffload* offload);

// `tensors` holds "latents" and whatever else the callback may read and replace.
DenoisingLoopResult run_denoising_loop(const DenoisingLoopSpec& spec, StepTensors tensors);

}  // namespace nd
