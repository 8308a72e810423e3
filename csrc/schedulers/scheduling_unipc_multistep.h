// Mirrors diffusers UniPCMultistepScheduler (schedulers/scheduling_unipc_multistep.py).
// UniPC (Zhao et al. 2023): a multistep predictor (UniP) followed, at the next call, by a
// corrector (UniC) that reuses the new model output at no extra model cost; B(h) variants bh1 and
// bh2, data (predict_x0) or noise prediction, Karras/exponential sigmas as config.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "schedulers/scheduling_utils.h"

namespace nd {

struct UniPCMultistepSchedulerConfig : SchedulerConfigBase {
  // Defaults are diffusers' UniPCMultistepScheduler constructor defaults.
  int64_t solver_order = 2;  // 2 for guided sampling, 3 unconditional
  bool thresholding = false;
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;
  bool predict_x0 = true;
  std::string solver_type = "bh2";  // bh1 | bh2
  bool lower_order_final = true;
  std::vector<int64_t> disable_corrector;  // step indices whose corrector is skipped
  bool use_karras_sigmas = false;
  bool use_exponential_sigmas = false;
  bool use_beta_sigmas = false;  // scipy in diffusers; rejected here
  bool use_flow_sigmas = false;  // flow-matching models; rejected here
  double flow_shift = 1.0;
  std::string final_sigmas_type = "zero";  // zero | sigma_min
  bool rescale_betas_zero_snr = false;
  bool use_dynamic_shifting = false;  // flow sigmas only
  std::string time_shift_type = "exponential";
  std::optional<double> sigma_min;  // Karras/exponential range; the training range when unset
  std::optional<double> sigma_max;
  // solver_p (another scheduler as predictor) and shift_terminal (flow sigmas) are rejected when
  // set, and written back as null.

  static UniPCMultistepSchedulerConfig from_json(const io::JsonConfig& json);
  io::Json to_json() const;
};

class UniPCMultistepScheduler : public Scheduler {
 public:
  explicit UniPCMultistepScheduler(UniPCMultistepSchedulerConfig config);

  std::string class_name() const override { return "UniPCMultistepScheduler"; }
  io::Json config_json() const override { return config_.to_json(); }
  const UniPCMultistepSchedulerConfig& config() const { return config_; }

  // No custom timesteps; custom sigmas need flow sigmas in diffusers and are rejected.
  void set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                     const std::vector<double>& timesteps, const std::vector<double>& sigmas) override;
  SchedulerOutput step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                       const StepOptions& options) override;
  at::Tensor add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                       const at::Tensor& timesteps) override;

  // The solver's building blocks, as diffusers exposes them (they use the current step index).
  at::Tensor convert_model_output(const at::Tensor& model_output, const at::Tensor& sample) const;
  at::Tensor multistep_uni_p_bh_update(const at::Tensor& sample, int64_t order) const;
  at::Tensor multistep_uni_c_bh_update(const at::Tensor& this_model_output, const at::Tensor& last_sample,
                                       const at::Tensor& this_sample, int64_t order) const;

 private:
  UniPCMultistepSchedulerConfig config_;
  std::vector<at::Tensor> model_outputs_;  // the last solver_order converted outputs, oldest first
  int64_t lower_order_nums_ = 0;
  int64_t this_order_ = 0;  // the predictor's order at the previous step, which its corrector reuses
  at::Tensor last_sample_;  // the sample the previous predictor started from
};

}  // namespace nd
