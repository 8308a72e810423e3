#include "schedulers/scheduling_euler_ancestral_discrete.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/random.h"

namespace nd {

EulerAncestralDiscreteSchedulerConfig EulerAncestralDiscreteSchedulerConfig::from_json(const io::JsonConfig& json) {
  EulerAncestralDiscreteSchedulerConfig c;
  // diffusers raises "prediction_type not implemented yet: sample" in step; refuse it up front.
  c.read_base(json, {PredictionType::kEpsilon, PredictionType::kVPrediction});
  c.rescale_betas_zero_snr = json.get_bool("rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  return c;
}

io::Json EulerAncestralDiscreteSchedulerConfig::to_json() const {
  io::Json out = io::Json::object();
  write_base(out);
  out["rescale_betas_zero_snr"] = rescale_betas_zero_snr;
  return out;
}

EulerAncestralDiscreteScheduler::EulerAncestralDiscreteScheduler(EulerAncestralDiscreteSchedulerConfig config)
    : config_(std::move(config)) {
  betas_ = make_betas(config_, "EulerAncestralDiscreteScheduler config");
  if (config_.rescale_betas_zero_snr) betas_ = rescale_zero_terminal_snr(betas_);
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = at::cumprod(alphas_, 0);
  if (config_.rescale_betas_zero_snr) alphas_cumprod_[-1] = std::pow(2.0, -24);
  const at::Tensor sigmas = at::pow((1 - alphas_cumprod_) / alphas_cumprod_, 0.5).flip(0);
  sigmas_ = at::cat({sigmas, at::zeros({1}, at::kFloat)});
  std::vector<double> ts = np_linspace(0, static_cast<double>(config_.num_train_timesteps - 1),
                                       config_.num_train_timesteps);
  std::reverse(ts.begin(), ts.end());
  timesteps_ = to_tensor(ts, at::kDouble);  // diffusers' pre-set_timesteps schedule is float64
}

at::Tensor EulerAncestralDiscreteScheduler::init_noise_sigma() const {
  if (config_.timestep_spacing != TimestepSpacing::kLeading) return sigmas_.max();
  return at::pow(at::pow(sigmas_.max(), 2) + 1, 0.5);
}

void EulerAncestralDiscreteScheduler::set_timesteps(std::optional<int64_t> num_inference_steps,
                                                    std::optional<c10::Device> device,
                                                    const std::vector<double>& timesteps,
                                                    const std::vector<double>& sigmas) {
  // Ref: diffusers EulerAncestralDiscreteScheduler.set_timesteps.
  if (!timesteps.empty() || !sigmas.empty()) {
    throw ValueError(
        "The current scheduler class EulerAncestralDiscreteScheduler's `set_timesteps` does not support custom "
        "timestep or sigma schedules. Please check whether you are using the correct scheduler.");
  }
  if (!num_inference_steps || *num_inference_steps < 1) {
    throw ValueError("`num_inference_steps` must be a positive integer for EulerAncestralDiscreteScheduler");
  }
  const int64_t n = *num_inference_steps;
  num_inference_steps_ = n;
  const std::vector<double> ts = spaced_timesteps_descending(config_.timestep_spacing, config_.num_train_timesteps,
                                                             n, config_.steps_offset);
  std::vector<double> ts_cast;
  for (double t : ts) ts_cast.push_back(static_cast<float>(t));
  const std::vector<float> train = train_sigmas(alphas_cumprod_);
  std::vector<double> s = np_interp(ts_cast, std::vector<double>(train.begin(), train.end()));
  s.push_back(0.0);
  sigmas_ = to_tensor(s, at::kFloat);
  timesteps_ = to_tensor(ts_cast, at::kFloat);
  if (device) timesteps_ = timesteps_.to(*device);
  step_index_.reset();
  begin_index_.reset();
}

at::Tensor EulerAncestralDiscreteScheduler::scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) {
  if (!step_index_) init_step_index(timestep);
  const at::Tensor sigma = sigmas_[*step_index_];
  return sample / at::pow(at::pow(sigma, 2) + 1, 0.5);
}

SchedulerOutput EulerAncestralDiscreteScheduler::step(const at::Tensor& model_output, const at::Tensor& timestep,
                                                      const at::Tensor& sample_in, const StepOptions& o) {
  // Ref: diffusers scheduling_euler_ancestral_discrete.py, step.
  if (!at::isFloatingType(timestep.scalar_type())) {
    throw ValueError(
        "Passing integer indices (e.g. from `enumerate(timesteps)`) as timesteps to "
        "`EulerAncestralDiscreteScheduler.step()` is not supported. Make sure to pass one of the "
        "`scheduler.timesteps` as a timestep.");
  }
  if (!step_index_) init_step_index(timestep);
  const at::Tensor sigma = sigmas_[*step_index_];
  const at::Tensor sample = sample_in.to(at::kFloat);
  // 1. compute predicted original sample (x_0) from sigma-scaled predicted noise
  at::Tensor pred_original_sample;
  if (config_.prediction_type == PredictionType::kVPrediction) {
    pred_original_sample = model_output * (-sigma / at::pow(at::pow(sigma, 2) + 1, 0.5)) +
                           (sample / (at::pow(sigma, 2) + 1));
  } else {
    pred_original_sample = sample - sigma * model_output;
  }
  const at::Tensor sigma_from = sigmas_[*step_index_];
  const at::Tensor sigma_to = sigmas_[*step_index_ + 1];
  const at::Tensor sigma_up =
      at::pow(at::pow(sigma_to, 2) * (at::pow(sigma_from, 2) - at::pow(sigma_to, 2)) / at::pow(sigma_from, 2), 0.5);
  const at::Tensor sigma_down = at::pow(at::pow(sigma_to, 2) - at::pow(sigma_up, 2), 0.5);
  // 2. convert to an ODE derivative, Euler step to sigma_down, then add noise of size sigma_up
  const at::Tensor derivative = (sample - pred_original_sample) / sigma;
  const at::Tensor dt = sigma_down - sigma;
  at::Tensor prev_sample = sample + derivative * dt;
  const at::Tensor noise =
      randn_tensor(model_output.sizes(), o.generators, model_output.device(), model_output.scalar_type());
  prev_sample = prev_sample + noise * sigma_up;
  prev_sample = prev_sample.to(model_output.scalar_type());
  *step_index_ += 1;
  return {prev_sample, pred_original_sample};
}

at::Tensor EulerAncestralDiscreteScheduler::add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                                                      const at::Tensor& timesteps) {
  const at::Tensor sigma = sigmas_for_add_noise(original_samples, timesteps);
  return original_samples + noise * sigma;
}

}  // namespace nd
