// Mirrors diffusers EulerDiscreteScheduler (schedulers/scheduling_euler_discrete.py).
// Euler's method in sigma space (Karras et al. 2022, Algorithm 2), with optional churn noise;
// Karras/exponential sigmas are config, not a separate class.
#pragma once

#include <optional>
#include <string>

#include "schedulers/scheduling_utils.h"

namespace nd {

struct EulerDiscreteSchedulerConfig : SchedulerConfigBase {
  // Defaults are diffusers' EulerDiscreteScheduler constructor defaults.
  std::string interpolation_type = "linear";  // linear | log_linear
  bool use_karras_sigmas = false;
  bool use_exponential_sigmas = false;
  bool use_beta_sigmas = false;  // needs scipy's beta ppf in diffusers; rejected here
  std::optional<double> sigma_min;
  std::optional<double> sigma_max;
  std::string timestep_type = "discrete";  // discrete | continuous (continuous needs v_prediction)
  bool rescale_betas_zero_snr = false;
  std::string final_sigmas_type = "zero";  // zero | sigma_min

  static EulerDiscreteSchedulerConfig from_json(const io::JsonConfig& json);
  io::Json to_json() const;
};

class EulerDiscreteScheduler : public Scheduler {
 public:
  explicit EulerDiscreteScheduler(EulerDiscreteSchedulerConfig config);

  std::string class_name() const override { return "EulerDiscreteScheduler"; }
  io::Json config_json() const override { return config_.to_json(); }
  const EulerDiscreteSchedulerConfig& config() const { return config_; }

  // Accepts custom `timesteps` or `sigmas` (the latter with one more entry than steps).
  void set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                     const std::vector<double>& timesteps, const std::vector<double>& sigmas) override;
  // Ref: diffusers scale_model_input: sample / sqrt(sigma^2 + 1).
  at::Tensor scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) override;
  // Reads options.s_churn, s_tmin, s_tmax, s_noise and generators.
  SchedulerOutput step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                       const StepOptions& options) override;
  at::Tensor add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                       const at::Tensor& timesteps) override;
  at::Tensor init_noise_sigma() const override;

 private:
  bool continuous_v() const {
    return config_.timestep_type == "continuous" && config_.prediction_type == PredictionType::kVPrediction;
  }
  // 0.25 * log(sigma) per sigma, one 0-d op at a time as diffusers' list comprehension does.
  static at::Tensor continuous_timesteps(const at::Tensor& sigmas);

  EulerDiscreteSchedulerConfig config_;
};

}  // namespace nd
