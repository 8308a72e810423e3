#include "pipelines/denoising_loop.h"

#include <ATen/ATen.h>

#include <optional>

#include "core/errors.h"
#include "runtime/host_sync_check.h"
#include "core/progress_bar.h"
#include "offload/model_offload.h"
#include "runtime/interrupt_check.h"

namespace nd {
namespace {

void check_spec(const DenoisingLoopSpec& spec, const StepTensors& tensors) {
  if (!spec.scheduler || !spec.denoiser || !spec.guider) {
    throw ValueError("a denoising loop needs a scheduler, a denoiser and a guider");
  }
  if (tensors.find("latents") == tensors.end()) throw ValueError("a denoising loop needs its `latents`");
  if (spec.callback && spec.callback_steps < 1) {
    throw ValueError("`callback_steps` has to be a positive integer but is " + std::to_string(spec.callback_steps));
  }
}

// The step after which diffusers' progress bar advances (higher-order schedulers repeat steps).
bool progress_advances(const DenoisingLoopSpec& spec, int64_t i, int64_t count, int64_t order) {
  if (spec.progress_per_timestep) return true;
  return i == count - 1 || ((i + 1) > spec.window.num_warmup_steps && (i + 1) % order == 0);
}

DenoisingLoopResult run_steps(const DenoisingLoopSpec& spec, StepTensors tensors);

}  // namespace

DenoisingLoopSpec loop_spec(const LoopOptions& options, TimestepWindow window, Scheduler& scheduler,
                            Denoiser& denoiser, const Guider& guider, PipelineOffload* offload) {
  DenoisingLoopSpec spec;
  spec.window = std::move(window);
  spec.scheduler = &scheduler;
  spec.denoiser = &denoiser;
  spec.guider = &guider;
  spec.step_options.eta = options.eta;
  spec.step_options.generators = options.generators;
  spec.progress_bar = options.progress_bar;
  spec.callback_on_step_end = options.callback_on_step_end;
  spec.callback = options.callback;
  spec.callback_steps = options.callback_steps;
  spec.offload = offload;
  return spec;
}

DenoisingLoopResult run_denoising_loop(const DenoisingLoopSpec& spec, StepTensors tensors) {
  check_spec(spec, tensors);
  try {
    return run_steps(spec, std::move(tensors));
  } catch (...) {
    // The call ends here (an interrupt, bad input met mid-loop): its components go home, as at the
    // end of every call, so that the pipeline's next call starts as the first did.
    if (spec.offload) spec.offload->offload_all();
    throw;
  }
}

namespace {

DenoisingLoopResult run_steps(const DenoisingLoopSpec& spec, StepTensors tensors) {
  Scheduler& scheduler = *spec.scheduler;
  const at::Tensor& timesteps = spec.window.timesteps;
  const int64_t count = timesteps.size(0);
  const int64_t order = scheduler.order();
  if (spec.offload) spec.offload->activate(spec.component);
  // The scheduler reads timestep values; from a host copy, no step waits for the GPU.
  const at::Tensor host_timesteps = timesteps.cpu();
  StepOptions step_options = spec.step_options;
  DenoisingLoopResult result;
  result.num_timesteps = count;
  {
    ProgressBar progress(spec.progress_per_timestep ? count : spec.window.num_inference_steps, spec.progress_bar);
    for (int64_t i = 0; i < count && !result.interrupted; ++i) {
      check_for_interrupt();
      const StepSyncCheck no_host_sync(i);
      const at::Tensor t = timesteps[i];
      const at::Tensor t_host = host_timesteps[i];
      const at::Tensor latents = tensors.at("latents");
      at::Tensor model_input = spec.guider->prepare(latents);
      if (spec.scales_model_input) model_input = scheduler.scale_model_input(model_input, t_host);
      const LoopStep step{i, t, t_host, latents, model_input, tensors, scheduler};
      const at::Tensor prediction = spec.guider->combine((*spec.denoiser)(step));
      if (spec.passes_prev_timestep) {
        step_options.prev_timestep =
            i + 1 == count ? std::nullopt : std::optional<int64_t>(host_timesteps[i + 1].item<int64_t>());
      }
      at::Tensor next = scheduler.step(prediction, t_host, latents, step_options).prev_sample;
      for (const AfterStepHook* hook : spec.after_step) next = hook->after_step(step, next);
      tensors["latents"] = next;
      if (spec.callback_on_step_end) {
        result.interrupted = run_step_callback(spec.callback_on_step_end, i, t, tensors);
        spec.denoiser->after_step_callback();
      }
      if (progress_advances(spec, i, count, order)) {
        progress.update();
        if (spec.callback && i % spec.callback_steps == 0) {
          const HostSyncCheckPause user_code;
          spec.callback(i / order, t, tensors.at("latents"));
        }
      }
    }
  }
  result.latents = tensors.at("latents");
  return result;
}

}  // namespace
}  // namespace nd
