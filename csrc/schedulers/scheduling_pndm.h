// Mirrors diffusers PNDMScheduler (schedulers/scheduling_pndm.py).
// SD 1.5's default scheduler: pseudo numerical methods (Runge-Kutta warm-up, then linear
// multistep). With skip_prk_steps (every SD checkpoint) the warm-up is PLMS's own: the first
// step is taken twice, so 50 steps evaluate the model 51 times.
#pragma once

#include <vector>

#include "schedulers/scheduling_utils.h"

namespace nd {

struct PNDMSchedulerConfig : SchedulerConfigBase {
  // Defaults are diffusers' PNDMScheduler constructor defaults.
  bool skip_prk_steps = false;
  // The alpha product "before" step 0: 1 (clean) or alphas_cumprod[0].
  bool set_alpha_to_one = false;

  PNDMSchedulerConfig() { timestep_spacing = TimestepSpacing::kLeading; }
  static PNDMSchedulerConfig from_json(const io::JsonConfig& json);
  io::Json to_json() const;
};

class PNDMScheduler : public Scheduler {
 public:
  explicit PNDMScheduler(PNDMSchedulerConfig config);

  std::string class_name() const override { return "PNDMScheduler"; }
  io::Json config_json() const override { return config_.to_json(); }
  const PNDMSchedulerConfig& config() const { return config_; }

  void set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                     const std::vector<double>& timesteps, const std::vector<double>& sigmas) override;
  SchedulerOutput step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                       const StepOptions& options) override;

  // The two phases diffusers exposes; `step` picks one by the internal counter.
  SchedulerOutput step_prk(const at::Tensor& model_output, int64_t timestep, const at::Tensor& sample);
  SchedulerOutput step_plms(const at::Tensor& model_output, int64_t timestep, const at::Tensor& sample);

 private:
  // Ref: diffusers PNDMScheduler._get_prev_sample, formula (9) of the PNDM paper.
  at::Tensor get_prev_sample(const at::Tensor& sample, int64_t timestep, int64_t prev_timestep,
                             at::Tensor model_output) const;

  PNDMSchedulerConfig config_;
  at::Tensor final_alpha_cumprod_;  // 0-d
  static constexpr int64_t kPndmOrder = 4;
  std::vector<int64_t> prk_timesteps_, plms_timesteps_;
  // Multistep state, reset by set_timesteps.
  at::Tensor cur_model_output_;  // undefined stands for diffusers' 0
  at::Tensor cur_sample_;        // undefined stands for None
  std::vector<at::Tensor> ets_;
  int64_t counter_ = 0;
};

}  // namespace nd
