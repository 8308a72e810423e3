#include "schedulers/scheduling_euler_discrete.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/random.h"

namespace nd {

EulerDiscreteSchedulerConfig EulerDiscreteSchedulerConfig::from_json(const io::JsonConfig& json) {
  EulerDiscreteSchedulerConfig c;
  c.read_base(json, {PredictionType::kEpsilon, PredictionType::kSample, PredictionType::kVPrediction});
  c.interpolation_type = json.get_string("interpolation_type", c.interpolation_type);
  check_choice(json, "interpolation_type", c.interpolation_type, {"linear", "log_linear"});
  c.use_karras_sigmas = json.get_bool("use_karras_sigmas", c.use_karras_sigmas);
  c.use_exponential_sigmas = json.get_bool("use_exponential_sigmas", c.use_exponential_sigmas);
  c.use_beta_sigmas = json.get_bool("use_beta_sigmas", c.use_beta_sigmas);
  if (c.use_beta_sigmas) json.fail("use_beta_sigmas", "unsupported value true (beta sigmas are not implemented)");
  if (c.use_karras_sigmas + c.use_exponential_sigmas + c.use_beta_sigmas > 1) {
    json.fail("use_karras_sigmas",
              "Only one of `config.use_beta_sigmas`, `config.use_exponential_sigmas`, `config.use_karras_sigmas` can "
              "be used");
  }
  if (json.has_value("sigma_min")) c.sigma_min = json.get_double("sigma_min");
  if (json.has_value("sigma_max")) c.sigma_max = json.get_double("sigma_max");
  c.timestep_type = json.get_string("timestep_type", c.timestep_type);
  check_choice(json, "timestep_type", c.timestep_type, {"discrete", "continuous"});
  c.rescale_betas_zero_snr = json.get_bool("rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  c.final_sigmas_type = json.get_string("final_sigmas_type", c.final_sigmas_type);
  check_choice(json, "final_sigmas_type", c.final_sigmas_type, {"zero", "sigma_min"});
  return c;
}

io::Json EulerDiscreteSchedulerConfig::to_json() const {
  io::Json out = io::Json::object();
  write_base(out);
  out["interpolation_type"] = interpolation_type;
  out["use_karras_sigmas"] = use_karras_sigmas;
  out["use_exponential_sigmas"] = use_exponential_sigmas;
  out["use_beta_sigmas"] = use_beta_sigmas;
  out["sigma_min"] = sigma_min ? io::Json(*sigma_min) : io::Json(nullptr);
  out["sigma_max"] = sigma_max ? io::Json(*sigma_max) : io::Json(nullptr);
  out["timestep_type"] = timestep_type;
  out["rescale_betas_zero_snr"] = rescale_betas_zero_snr;
  out["final_sigmas_type"] = final_sigmas_type;
  return out;
}

at::Tensor EulerDiscreteScheduler::continuous_timesteps(const at::Tensor& sigmas) {
  std::vector<at::Tensor> ts;
  for (int64_t i = 0; i < sigmas.size(0); ++i) ts.push_back(0.25 * at::log(sigmas[i]));
  return ts.empty() ? at::empty({0}, at::kFloat) : at::stack(ts);
}

EulerDiscreteScheduler::EulerDiscreteScheduler(EulerDiscreteSchedulerConfig config) : config_(std::move(config)) {
  betas_ = make_betas(config_, "EulerDiscreteScheduler config");
  if (config_.rescale_betas_zero_snr) betas_ = rescale_zero_terminal_snr(betas_);
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = at::cumprod(alphas_, 0);
  // Ref: diffusers: keep the final alpha product off exact zero so its sigma stays finite.
  if (config_.rescale_betas_zero_snr) alphas_cumprod_[-1] = std::pow(2.0, -24);
  const at::Tensor sigmas = at::pow((1 - alphas_cumprod_) / alphas_cumprod_, 0.5).flip(0);
  std::vector<double> ts = np_linspace(0, static_cast<double>(config_.num_train_timesteps - 1),
                                       config_.num_train_timesteps);
  std::reverse(ts.begin(), ts.end());
  timesteps_ = continuous_v() ? continuous_timesteps(sigmas) : to_tensor(ts, at::kFloat);
  sigmas_ = at::cat({sigmas, at::zeros({1}, at::kFloat)});
}

at::Tensor EulerDiscreteScheduler::init_noise_sigma() const {
  const at::Tensor max_sigma = sigmas_.max();
  if (config_.timestep_spacing != TimestepSpacing::kLeading) return max_sigma;
  return at::pow(at::pow(max_sigma, 2) + 1, 0.5);
}

void EulerDiscreteScheduler::set_timesteps(std::optional<int64_t> num_inference_steps,
                                           std::optional<c10::Device> device, const std::vector<double>& timesteps,
                                           const std::vector<double>& custom_sigmas) {
  // Ref: diffusers EulerDiscreteScheduler.set_timesteps.
  if (!timesteps.empty() && !custom_sigmas.empty()) throw ValueError("Only one of `timesteps` or `sigmas` should be set.");
  const bool custom = !timesteps.empty() || !custom_sigmas.empty();
  if (!custom && (!num_inference_steps || *num_inference_steps < 1)) {
    throw ValueError("Must pass exactly one of `num_inference_steps` or `timesteps` or `sigmas.");
  }
  if (!timesteps.empty()) {
    if (config_.use_karras_sigmas) throw ValueError("Cannot set `timesteps` with `config.use_karras_sigmas = True`.");
    if (config_.use_exponential_sigmas) {
      throw ValueError("Cannot set `timesteps` with `config.use_exponential_sigmas = True`.");
    }
    if (continuous_v()) {
      throw ValueError(
          "Cannot set `timesteps` with `config.timestep_type = 'continuous'` and `config.prediction_type = "
          "'v_prediction'`.");
    }
  }
  if (!custom_sigmas.empty() && custom_sigmas.size() < 2) {
    throw ValueError("`sigmas` needs at least two values (the last is the sigma after the final step)");
  }
  const int64_t n = !timesteps.empty()       ? static_cast<int64_t>(timesteps.size())
                    : !custom_sigmas.empty() ? static_cast<int64_t>(custom_sigmas.size()) - 1
                                             : *num_inference_steps;
  num_inference_steps_ = n;
  const std::vector<float> train = train_sigmas(alphas_cumprod_);
  const std::vector<float> log_sigmas = log_of(train);

  std::vector<float> ts_f32;     // final timesteps (float32)
  std::vector<double> sigmas64;  // sigmas before the float32 cast
  if (!custom_sigmas.empty()) {
    // Ref: diffusers: sigmas cast to float32, timesteps from _sigma_to_t in float32 arithmetic.
    for (double s : custom_sigmas) sigmas64.push_back(static_cast<float>(s));
    for (size_t i = 0; i + 1 < custom_sigmas.size(); ++i) {
      const float sigma = static_cast<float>(custom_sigmas[i]);
      const float log_sigma = std::log(std::max(sigma, 1e-10f));
      const int64_t len = static_cast<int64_t>(log_sigmas.size());
      int64_t low_idx = 0;
      for (int64_t k = 0; k < len; ++k) {
        if (log_sigma - log_sigmas[k] >= 0) low_idx = k;
      }
      low_idx = std::min(low_idx, len - 2);
      const float low = log_sigmas[low_idx], high = log_sigmas[low_idx + 1];
      float w = (low - log_sigma) / (low - high);
      w = std::clamp(w, 0.0f, 1.0f);
      const double t = static_cast<double>(1 - w) * static_cast<double>(low_idx) +
                       static_cast<double>(w) * static_cast<double>(low_idx + 1);
      ts_f32.push_back(static_cast<float>(t));
    }
  } else {
    std::vector<double> ts;
    if (!timesteps.empty()) {
      ts = timesteps;
    } else {
      ts = spaced_timesteps_descending(config_.timestep_spacing, config_.num_train_timesteps, n, 0);
      if (config_.timestep_spacing == TimestepSpacing::kLeading) {
        for (double& t : ts) t += static_cast<double>(config_.steps_offset);
      }
    }
    // numpy casts the timesteps to float32 before interpolating.
    std::vector<double> ts_cast;
    for (double t : ts) ts_cast.push_back(static_cast<float>(t));
    const std::vector<double> train64(train.begin(), train.end());
    if (config_.interpolation_type == "linear") {
      sigmas64 = np_interp(ts_cast, train64);
    } else {
      // Ref: diffusers log_linear: torch.linspace(log(s[-1]), log(s[0]), n + 1).exp() in float32.
      const double lo = std::log(train.back()), hi = std::log(train.front());
      const at::Tensor s = at::linspace(static_cast<float>(lo), static_cast<float>(hi), n + 1, at::kFloat).exp();
      for (int64_t i = 0; i < s.size(0); ++i) sigmas64.push_back(s[i].item<float>());
    }
    std::vector<double> ts_out = ts_cast;
    if (config_.use_karras_sigmas || config_.use_exponential_sigmas) {
      const double smin = config_.sigma_min.value_or(sigmas64.back());
      const double smax = config_.sigma_max.value_or(sigmas64.front());
      sigmas64 = config_.use_karras_sigmas ? convert_to_karras(smin, smax, n) : convert_to_exponential(smin, smax, n);
      ts_out.clear();
      for (double s : sigmas64) ts_out.push_back(sigma_to_t(s, log_sigmas));
    }
    const double sigma_last = config_.final_sigmas_type == "sigma_min" ? static_cast<double>(train.front()) : 0.0;
    sigmas64.push_back(sigma_last);
    for (double t : ts_out) ts_f32.push_back(static_cast<float>(t));
  }
  at::Tensor sigmas = to_tensor(sigmas64, at::kFloat);
  std::vector<double> ts_d(ts_f32.begin(), ts_f32.end());
  timesteps_ = continuous_v() ? continuous_timesteps(sigmas.slice(0, 0, sigmas.size(0) - 1))
                              : to_tensor(ts_d, at::kFloat);
  if (device) timesteps_ = timesteps_.to(*device);
  step_index_.reset();
  begin_index_.reset();
  sigmas_ = sigmas;
}

at::Tensor EulerDiscreteScheduler::scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) {
  if (!step_index_) init_step_index(timestep);
  const at::Tensor sigma = sigmas_[*step_index_];
  return sample / at::pow(at::pow(sigma, 2) + 1, 0.5);
}

SchedulerOutput EulerDiscreteScheduler::step(const at::Tensor& model_output, const at::Tensor& timestep,
                                             const at::Tensor& sample_in, const StepOptions& o) {
  // Ref: diffusers scheduling_euler_discrete.py, step.
  if (!at::isFloatingType(timestep.scalar_type())) {
    throw ValueError(
        "Passing integer indices (e.g. from `enumerate(timesteps)`) as timesteps to `EulerDiscreteScheduler.step()` "
        "is not supported. Make sure to pass one of the `scheduler.timesteps` as a timestep.");
  }
  if (!step_index_) init_step_index(timestep);
  at::Tensor sample = sample_in.to(at::kFloat);
  const at::Tensor sigma = sigmas_[*step_index_];
  const double sigma_v = sigma.item<double>();
  const double gamma = (o.s_tmin <= sigma_v && sigma_v <= o.s_tmax)
                           ? std::min(o.s_churn / static_cast<double>(sigmas_.size(0) - 1), std::pow(2.0, 0.5) - 1)
                           : 0.0;
  const at::Tensor sigma_hat = sigma * (gamma + 1);
  if (gamma > 0) {
    const at::Tensor noise =
        randn_tensor(model_output.sizes(), o.generators, model_output.device(), model_output.scalar_type());
    const at::Tensor eps = noise * o.s_noise;
    sample = sample + eps * at::pow(at::pow(sigma_hat, 2) - at::pow(sigma, 2), 0.5);
  }
  // 1. compute predicted original sample (x_0) from sigma-scaled predicted noise
  at::Tensor pred_original_sample;
  switch (config_.prediction_type) {
    case PredictionType::kSample: pred_original_sample = model_output; break;
    case PredictionType::kEpsilon: pred_original_sample = sample - sigma_hat * model_output; break;
    case PredictionType::kVPrediction:
      pred_original_sample = model_output * (-sigma / at::pow(at::pow(sigma, 2) + 1, 0.5)) +
                             (sample / (at::pow(sigma, 2) + 1));
      break;
  }
  // 2. convert to an ODE derivative, 3. take the Euler step
  const at::Tensor derivative = (sample - pred_original_sample) / sigma_hat;
  const at::Tensor dt = sigmas_[*step_index_ + 1] - sigma_hat;
  at::Tensor prev_sample = sample + derivative * dt;
  prev_sample = prev_sample.to(model_output.scalar_type());
  *step_index_ += 1;
  return {prev_sample, pred_original_sample};
}

at::Tensor EulerDiscreteScheduler::add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                                             const at::Tensor& timesteps) {
  const at::Tensor sigma = sigmas_for_add_noise(original_samples, timesteps);
  return original_samples + noise * sigma;
}

}  // namespace nd
