#include "schedulers/scheduling_heun_discrete.h"

#include <ATen/ATen.h>

#include "core/errors.h"

namespace nd {

HeunDiscreteSchedulerConfig HeunDiscreteSchedulerConfig::from_json(const io::JsonConfig& json) {
  HeunDiscreteSchedulerConfig c;
  c.read_base(json, {PredictionType::kEpsilon, PredictionType::kSample, PredictionType::kVPrediction});
  c.use_karras_sigmas = json.get_bool("use_karras_sigmas", c.use_karras_sigmas);
  c.use_exponential_sigmas = json.get_bool("use_exponential_sigmas", c.use_exponential_sigmas);
  c.use_beta_sigmas = json.get_bool("use_beta_sigmas", c.use_beta_sigmas);
  if (c.use_beta_sigmas) json.fail("use_beta_sigmas", "unsupported value true (beta sigmas are not implemented)");
  if (c.use_karras_sigmas + c.use_exponential_sigmas + c.use_beta_sigmas > 1) {
    json.fail("use_karras_sigmas",
              "Only one of `config.use_beta_sigmas`, `config.use_exponential_sigmas`, `config.use_karras_sigmas` can "
              "be used");
  }
  c.clip_sample = json.get_bool("clip_sample", c.clip_sample);
  c.clip_sample_range = json.get_double("clip_sample_range", c.clip_sample_range);
  return c;
}

io::Json HeunDiscreteSchedulerConfig::to_json() const {
  io::Json out = io::Json::object();
  write_base(out);
  out["use_karras_sigmas"] = use_karras_sigmas;
  out["use_exponential_sigmas"] = use_exponential_sigmas;
  out["use_beta_sigmas"] = use_beta_sigmas;
  out["clip_sample"] = clip_sample;
  out["clip_sample_range"] = clip_sample_range;
  return out;
}

HeunDiscreteScheduler::HeunDiscreteScheduler(HeunDiscreteSchedulerConfig config) : config_(std::move(config)) {
  betas_ = make_betas(config_, "HeunDiscreteScheduler config");
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = at::cumprod(alphas_, 0);
  // Ref: diffusers __init__ runs set_timesteps(num_train_timesteps), so the schedule (and
  // num_inference_steps) exist before the first set_timesteps call.
  set_timesteps(config_.num_train_timesteps, std::nullopt, {}, {});
}

at::Tensor HeunDiscreteScheduler::init_noise_sigma() const {
  const at::Tensor max_sigma = sigmas_.max();
  if (config_.timestep_spacing != TimestepSpacing::kLeading) return max_sigma;
  return at::pow(at::pow(max_sigma, 2) + 1, 0.5);
}

void HeunDiscreteScheduler::set_timesteps(std::optional<int64_t> num_inference_steps,
                                          std::optional<c10::Device> device,
                                          const std::vector<double>& custom_timesteps,
                                          const std::vector<double>& custom_sigmas) {
  // Ref: diffusers HeunDiscreteScheduler.set_timesteps.
  if (!custom_sigmas.empty()) {
    throw ValueError(
        "The current scheduler class HeunDiscreteScheduler's `set_timesteps` does not support custom sigmas "
        "schedules. Please check whether you are using the correct scheduler.");
  }
  const bool custom = !custom_timesteps.empty();
  if (!custom && (!num_inference_steps || *num_inference_steps < 1)) {
    throw ValueError("Must pass exactly one of `num_inference_steps` or `custom_timesteps`.");
  }
  if (custom && num_inference_steps) {
    throw ValueError("Can only pass one of `num_inference_steps` or `custom_timesteps`.");
  }
  if (custom && config_.use_karras_sigmas) {
    throw ValueError("Cannot use `timesteps` with `config.use_karras_sigmas = True`");
  }
  if (custom && config_.use_exponential_sigmas) {
    throw ValueError("Cannot set `timesteps` with `config.use_exponential_sigmas = True`.");
  }
  const int64_t n = custom ? static_cast<int64_t>(custom_timesteps.size()) : *num_inference_steps;
  num_inference_steps_ = n;
  const std::vector<float> train = train_sigmas(alphas_cumprod_);
  const std::vector<float> log_sigmas = log_of(train);
  // numpy holds the timesteps in float32 before interpolating (custom ones included).
  std::vector<double> ts;
  if (custom) {
    for (double t : custom_timesteps) ts.push_back(static_cast<float>(t));
  } else {
    for (double t : spaced_timesteps_descending(config_.timestep_spacing, config_.num_train_timesteps, n, 0)) {
      // Ref: diffusers: `timesteps += steps_offset` is a float32 add, leading spacing only.
      float tf = static_cast<float>(t);
      if (config_.timestep_spacing == TimestepSpacing::kLeading) tf += static_cast<float>(config_.steps_offset);
      ts.push_back(tf);
    }
  }
  std::vector<double> sigmas = np_interp(ts, std::vector<double>(train.begin(), train.end()));
  if (config_.use_karras_sigmas || config_.use_exponential_sigmas) {
    // Ref: diffusers _convert_to_karras / _convert_to_exponential: the interpolated ends (the
    // class has no sigma_min / sigma_max config).
    const double smin = sigmas.back(), smax = sigmas.front();
    sigmas = config_.use_karras_sigmas ? convert_to_karras(smin, smax, n) : convert_to_exponential(smin, smax, n);
    ts.clear();
    for (double s : sigmas) ts.push_back(sigma_to_t(s, log_sigmas));
  }
  sigmas.push_back(0.0);
  const at::Tensor s = to_tensor(sigmas, at::kFloat);
  const at::Tensor t = to_tensor(ts, at::kFloat);
  // Every sigma but the first and the final zero serves two model calls (Euler, then correction);
  // every timestep but the first likewise.
  const int64_t m = s.size(0);
  sigmas_ = at::cat({s.slice(0, 0, 1), s.slice(0, 1, m - 1).repeat_interleave(2), s.slice(0, m - 1, m)});
  timesteps_ = at::cat({t.slice(0, 0, 1), t.slice(0, 1).repeat_interleave(2)});
  if (device) timesteps_ = timesteps_.to(*device);
  prev_derivative_ = at::Tensor();
  dt_ = at::Tensor();
  sample_ = at::Tensor();
  step_index_.reset();
  begin_index_.reset();
}

at::Tensor HeunDiscreteScheduler::scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) {
  if (!step_index_) init_step_index(timestep);
  const at::Tensor sigma = sigmas_[*step_index_];
  return sample / at::pow(at::pow(sigma, 2) + 1, 0.5);
}

SchedulerOutput HeunDiscreteScheduler::step(const at::Tensor& model_output, const at::Tensor& timestep,
                                            const at::Tensor& sample_in, const StepOptions& /*options*/) {
  // Ref: diffusers scheduling_heun_discrete.py, step.
  if (!step_index_) init_step_index(timestep);
  const int64_t i = *step_index_;
  const bool first_order = state_in_first_order();
  // The second-order half evaluates at the next sigma but steps from the first half's sigma.
  const at::Tensor sigma = first_order ? sigmas_[i] : sigmas_[i - 1];
  const at::Tensor sigma_next = first_order ? sigmas_[i + 1] : sigmas_[i];
  const at::Tensor sigma_hat = sigma * 1;  // gamma = 0: diffusers keeps sigma_hat = sigma * (gamma + 1)
  // 1. compute predicted original sample (x_0) from sigma-scaled predicted noise
  at::Tensor pred_original_sample;
  const at::Tensor& sigma_input = first_order ? sigma_hat : sigma_next;
  switch (config_.prediction_type) {
    case PredictionType::kEpsilon: pred_original_sample = sample_in - sigma_input * model_output; break;
    case PredictionType::kVPrediction:
      pred_original_sample = model_output * (-sigma_input / at::pow(at::pow(sigma_input, 2) + 1, 0.5)) +
                             (sample_in / (at::pow(sigma_input, 2) + 1));
      break;
    case PredictionType::kSample: pred_original_sample = model_output; break;
  }
  if (config_.clip_sample) {
    pred_original_sample = pred_original_sample.clamp(-config_.clip_sample_range, config_.clip_sample_range);
  }
  at::Tensor derivative, dt, sample;
  if (first_order) {
    // 2. convert to an ODE derivative for the Euler half
    derivative = (sample_in - pred_original_sample) / sigma_hat;
    dt = sigma_next - sigma_hat;
    prev_derivative_ = derivative;
    dt_ = dt;
    sample_ = sample_in;
    sample = sample_in;
  } else {
    // 2. the trapezoidal rule: average the two derivatives, step from the first half's sample
    derivative = (sample_in - pred_original_sample) / sigma_next;
    derivative = (prev_derivative_ + derivative) / 2;
    dt = dt_;
    sample = sample_;
    prev_derivative_ = at::Tensor();
    dt_ = at::Tensor();
    sample_ = at::Tensor();
  }
  const at::Tensor prev_sample = sample + derivative * dt;
  *step_index_ += 1;
  return {prev_sample, pred_original_sample};
}

at::Tensor HeunDiscreteScheduler::add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                                            const at::Tensor& timesteps) {
  const at::Tensor sigma = sigmas_for_add_noise(original_samples, timesteps);
  return original_samples + noise * sigma;
}

}  // namespace nd
