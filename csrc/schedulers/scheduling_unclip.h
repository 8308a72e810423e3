// Mirrors diffusers UnCLIPScheduler (schedulers/scheduling_unclip.py).
// DDPM as the Karlo unCLIP prior samples it: squaredcos_cap_v2 betas only, timesteps spread as
// round(i * (T - 1) / (n - 1)), betas recomputed from the step actually taken (`prev_timestep`),
// and a fixed_small_log / learned_range posterior variance.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "schedulers/scheduling_utils.h"

namespace nd {

struct UnCLIPSchedulerConfig {
  // Defaults are diffusers' UnCLIPScheduler constructor defaults; these are all its keys.
  int64_t num_train_timesteps = 1000;
  std::string variance_type = "fixed_small_log";  // fixed_small_log | learned_range
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  PredictionType prediction_type = PredictionType::kEpsilon;  // epsilon | sample
  std::string beta_schedule = "squaredcos_cap_v2";            // the only one diffusers accepts

  static UnCLIPSchedulerConfig from_json(const io::JsonConfig& json);
  io::Json to_json() const;
};

class UnCLIPScheduler : public Scheduler {
 public:
  explicit UnCLIPScheduler(UnCLIPSchedulerConfig config);

  std::string class_name() const override { return "UnCLIPScheduler"; }
  io::Json config_json() const override { return config_.to_json(); }
  const UnCLIPSchedulerConfig& config() const { return config_; }

  // Custom timesteps and sigmas are not accepted (diffusers' signature has neither).
  void set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                     const std::vector<double>& timesteps, const std::vector<double>& sigmas) override;
  // Reads options.prev_timestep (none: t - 1 with the training beta) and options.generators.
  SchedulerOutput step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                       const StepOptions& options) override;

 private:
  // Ref: diffusers UnCLIPScheduler._get_variance.
  at::Tensor get_variance(int64_t t, int64_t prev_timestep, const at::Tensor& predicted_variance) const;
  at::Tensor alpha_prod_prev(int64_t prev_t) const { return prev_t >= 0 ? alphas_cumprod_[prev_t] : one_; }

  UnCLIPSchedulerConfig config_;
  at::Tensor one_;  // 0-d 1.0
};

}  // namespace nd
