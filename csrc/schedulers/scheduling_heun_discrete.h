// Mirrors diffusers HeunDiscreteScheduler (schedulers/scheduling_heun_discrete.py).
// Heun's method in sigma space (Karras et al. 2022, Algorithm 1 without churn): order 2, so every
// timestep after the first appears twice in `timesteps` and the model is called twice per step;
// an Euler step (first order) alternates with its trapezoidal correction (second order).
#pragma once

#include <string>

#include "schedulers/scheduling_utils.h"

namespace nd {

struct HeunDiscreteSchedulerConfig : SchedulerConfigBase {
  // Defaults are diffusers' HeunDiscreteScheduler constructor defaults (it alone defaults to SD's
  // beta range).
  bool use_karras_sigmas = false;
  bool use_exponential_sigmas = false;
  bool use_beta_sigmas = false;  // needs scipy's beta ppf in diffusers; rejected here
  bool clip_sample = false;
  double clip_sample_range = 1.0;

  HeunDiscreteSchedulerConfig() {
    beta_start = 0.00085;
    beta_end = 0.012;
  }
  static HeunDiscreteSchedulerConfig from_json(const io::JsonConfig& json);
  io::Json to_json() const;
};

class HeunDiscreteScheduler : public Scheduler {
 public:
  explicit HeunDiscreteScheduler(HeunDiscreteSchedulerConfig config);

  std::string class_name() const override { return "HeunDiscreteScheduler"; }
  io::Json config_json() const override { return config_.to_json(); }
  const HeunDiscreteSchedulerConfig& config() const { return config_; }
  int64_t order() const override { return 2; }

  // Accepts custom `timesteps` (not sigmas). `sigmas()` then holds 2n entries (the first and the
  // final zero once, every other sigma twice) and `timesteps()` 2n - 1.
  void set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                     const std::vector<double>& timesteps, const std::vector<double>& sigmas) override;
  // Ref: diffusers scale_model_input: sample / sqrt(sigma^2 + 1).
  at::Tensor scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) override;
  SchedulerOutput step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                       const StepOptions& options) override;
  at::Tensor add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                       const at::Tensor& timesteps) override;
  at::Tensor init_noise_sigma() const override;

  // Ref: diffusers state_in_first_order: true when the next step is an Euler step (no pending dt).
  bool state_in_first_order() const { return !dt_.defined(); }

 private:
  HeunDiscreteSchedulerConfig config_;
  // The first-order half's state, kept for the second-order half (diffusers' prev_derivative, dt,
  // sample); undefined between full steps.
  at::Tensor prev_derivative_, dt_, sample_;
};

}  // namespace nd
