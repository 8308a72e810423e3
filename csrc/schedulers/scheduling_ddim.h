// Mirrors diffusers DDIMScheduler (schedulers/scheduling_ddim.py).
// Denoising diffusion implicit models: deterministic at eta = 0, DDPM-like noise at eta = 1.
#pragma once

#include "schedulers/scheduling_utils.h"

namespace nd {

struct DDIMSchedulerConfig : SchedulerConfigBase {
  // Defaults are diffusers' DDIMScheduler constructor defaults.
  bool clip_sample = true;
  bool set_alpha_to_one = true;
  bool thresholding = false;  // dynamic thresholding (Imagen); pixel-space models only
  double dynamic_thresholding_ratio = 0.995;
  double clip_sample_range = 1.0;
  double sample_max_value = 1.0;
  bool rescale_betas_zero_snr = false;

  DDIMSchedulerConfig() { timestep_spacing = TimestepSpacing::kLeading; }
  static DDIMSchedulerConfig from_json(const io::JsonConfig& json);
  io::Json to_json() const;
};

class DDIMScheduler : public Scheduler {
 public:
  explicit DDIMScheduler(DDIMSchedulerConfig config);

  std::string class_name() const override { return "DDIMScheduler"; }
  io::Json config_json() const override { return config_.to_json(); }
  const DDIMSchedulerConfig& config() const { return config_; }

  void set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                     const std::vector<double>& timesteps, const std::vector<double>& sigmas) override;
  // Reads options.eta, use_clipped_model_output, generators and variance_noise.
  SchedulerOutput step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                       const StepOptions& options) override;

 private:
  // Ref: diffusers DDIMScheduler._get_variance, formula (16) of the DDIM paper.
  at::Tensor get_variance(int64_t timestep, int64_t prev_timestep) const;

  DDIMSchedulerConfig config_;
  at::Tensor final_alpha_cumprod_;  // 0-d
};

}  // namespace nd
