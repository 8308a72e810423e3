// Mirrors diffusers DDPMScheduler (schedulers/scheduling_ddpm.py).
// Denoising diffusion probabilistic models (Ho et al. 2020): ancestral sampling with the posterior
// variance chosen by `variance_type`, noise drawn from the caller's generator; custom timesteps.
#pragma once

#include <string>
#include <vector>

#include "schedulers/scheduling_utils.h"

namespace nd {

struct DDPMSchedulerConfig : SchedulerConfigBase {
  // Defaults are diffusers' DDPMScheduler constructor defaults.
  // fixed_small | fixed_small_log | fixed_large | fixed_large_log | learned | learned_range;
  // the learned ones read the variance from the second half of the model output's channels.
  std::string variance_type = "fixed_small";
  bool clip_sample = true;
  bool thresholding = false;  // dynamic thresholding (Imagen); pixel-space models only
  double dynamic_thresholding_ratio = 0.995;
  double clip_sample_range = 1.0;
  double sample_max_value = 1.0;
  bool rescale_betas_zero_snr = false;

  DDPMSchedulerConfig() { timestep_spacing = TimestepSpacing::kLeading; }
  static DDPMSchedulerConfig from_json(const io::JsonConfig& json);
  io::Json to_json() const;
};

class DDPMScheduler : public Scheduler {
 public:
  explicit DDPMScheduler(DDPMSchedulerConfig config);

  std::string class_name() const override { return "DDPMScheduler"; }
  io::Json config_json() const override { return config_.to_json(); }
  const DDPMSchedulerConfig& config() const { return config_; }

  // Accepts custom integer `timesteps` (strictly descending, below num_train_timesteps); as in
  // diffusers they leave `num_inference_steps` as it was.
  void set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                     const std::vector<double>& timesteps, const std::vector<double>& sigmas) override;
  // Reads options.generators (noise is added at every timestep but 0).
  SchedulerOutput step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                       const StepOptions& options) override;

  // Ref: diffusers DDPMScheduler.previous_timestep: the next entry of the schedule (-1 after the
  // last) once a schedule is set, else t - 1.
  int64_t previous_timestep(int64_t timestep) const;

 private:
  // Ref: diffusers DDPMScheduler._get_variance (formulas (6) and (7) of the DDPM paper).
  at::Tensor get_variance(int64_t t, const at::Tensor& predicted_variance) const;
  at::Tensor alpha_prod_prev(int64_t prev_t) const { return prev_t >= 0 ? alphas_cumprod_[prev_t] : one_; }

  DDPMSchedulerConfig config_;
  at::Tensor one_;  // 0-d 1.0: alpha_prod_t_prev after the last step
  bool custom_timesteps_ = false;
  std::vector<int64_t> schedule_;  // timesteps_ on the host
};

}  // namespace nd
