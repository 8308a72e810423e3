// Mirrors diffusers LMSDiscreteScheduler (schedulers/scheduling_lms_discrete.py).
// Linear multistep in sigma space (k-diffusion's sample_lms): the step integrates the Lagrange
// polynomial through the last `order` derivatives; diffusers integrates it with scipy's quad,
// which this file reproduces (see lms_coefficient) so coefficients match to the last bits.
#pragma once

#include <deque>
#include <string>

#include "schedulers/scheduling_utils.h"

namespace nd {

struct LMSDiscreteSchedulerConfig : SchedulerConfigBase {
  // Defaults are diffusers' LMSDiscreteScheduler constructor defaults.
  bool use_karras_sigmas = false;
  bool use_exponential_sigmas = false;
  bool use_beta_sigmas = false;  // needs scipy's beta ppf in diffusers; rejected here

  static LMSDiscreteSchedulerConfig from_json(const io::JsonConfig& json);
  io::Json to_json() const;
};

class LMSDiscreteScheduler : public Scheduler {
 public:
  explicit LMSDiscreteScheduler(LMSDiscreteSchedulerConfig config);

  std::string class_name() const override { return "LMSDiscreteScheduler"; }
  io::Json config_json() const override { return config_.to_json(); }
  const LMSDiscreteSchedulerConfig& config() const { return config_; }

  // No custom schedules (diffusers' set_timesteps takes none).
  void set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                     const std::vector<double>& timesteps, const std::vector<double>& sigmas) override;
  // Ref: diffusers scale_model_input: sample / sqrt(sigma^2 + 1).
  at::Tensor scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) override;
  // Reads options.order (diffusers' `order` argument of step, default 4).
  SchedulerOutput step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                       const StepOptions& options) override;
  at::Tensor add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                       const at::Tensor& timesteps) override;
  at::Tensor init_noise_sigma() const override;

  // Ref: diffusers get_lms_coefficient: the integral from sigma[t] to sigma[t + 1] of the Lagrange
  // basis polynomial of `current_order` through sigma[t], ..., sigma[t - order + 1].
  double lms_coefficient(int64_t order, int64_t t, int64_t current_order) const;

 private:
  LMSDiscreteSchedulerConfig config_;
  std::vector<float> sigma_values_;     // sigmas_ as floats, for the coefficient integrals
  std::deque<at::Tensor> derivatives_;  // the last `order` ODE derivatives, oldest first
};

}  // namespace nd
