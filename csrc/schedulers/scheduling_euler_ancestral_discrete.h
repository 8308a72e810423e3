// Mirrors diffusers EulerAncestralDiscreteScheduler
// (schedulers/scheduling_euler_ancestral_discrete.py): Euler steps to sigma_down, then fresh noise
// of size sigma_up drawn from the caller's generator at every step.
#pragma once

#include "schedulers/scheduling_utils.h"

namespace nd {

struct EulerAncestralDiscreteSchedulerConfig : SchedulerConfigBase {
  // Defaults are diffusers' EulerAncestralDiscreteScheduler constructor defaults.
  bool rescale_betas_zero_snr = false;

  static EulerAncestralDiscreteSchedulerConfig from_json(const io::JsonConfig& json);
  io::Json to_json() const;
};

class EulerAncestralDiscreteScheduler : public Scheduler {
 public:
  explicit EulerAncestralDiscreteScheduler(EulerAncestralDiscreteSchedulerConfig config);

  std::string class_name() const override { return "EulerAncestralDiscreteScheduler"; }
  io::Json config_json() const override { return config_.to_json(); }
  const EulerAncestralDiscreteSchedulerConfig& config() const { return config_; }

  void set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                     const std::vector<double>& timesteps, const std::vector<double>& sigmas) override;
  at::Tensor scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) override;
  // Reads options.generators.
  SchedulerOutput step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                       const StepOptions& options) override;
  at::Tensor add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                       const at::Tensor& timesteps) override;
  at::Tensor init_noise_sigma() const override;

 private:
  EulerAncestralDiscreteSchedulerConfig config_;
};

}  // namespace nd
