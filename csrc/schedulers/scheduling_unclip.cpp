#include "schedulers/scheduling_unclip.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/errors.h"
#include "core/random.h"

namespace nd {

UnCLIPSchedulerConfig UnCLIPSchedulerConfig::from_json(const io::JsonConfig& json) {
  UnCLIPSchedulerConfig c;
  c.num_train_timesteps = json.get_int("num_train_timesteps", c.num_train_timesteps);
  if (c.num_train_timesteps < 2) json.fail("num_train_timesteps", "expected at least 2");
  c.variance_type = json.get_string("variance_type", c.variance_type);
  check_choice(json, "variance_type", c.variance_type, {"fixed_small_log", "learned_range"});
  c.clip_sample = json.get_bool("clip_sample", c.clip_sample);
  c.clip_sample_range = json.get_double("clip_sample_range", c.clip_sample_range);
  c.prediction_type = read_prediction_type(json, c.prediction_type, {PredictionType::kEpsilon, PredictionType::kSample});
  c.beta_schedule = json.get_string("beta_schedule", c.beta_schedule);
  // Ref: diffusers UnCLIPScheduler.__init__: "only supports `beta_schedule`: 'squaredcos_cap_v2'".
  check_choice(json, "beta_schedule", c.beta_schedule, {"squaredcos_cap_v2"});
  return c;
}

io::Json UnCLIPSchedulerConfig::to_json() const {
  io::Json out = io::Json::object();
  out["num_train_timesteps"] = num_train_timesteps;
  out["variance_type"] = variance_type;
  out["clip_sample"] = clip_sample;
  out["clip_sample_range"] = clip_sample_range;
  out["prediction_type"] = to_string(prediction_type);
  out["beta_schedule"] = beta_schedule;
  return out;
}

UnCLIPScheduler::UnCLIPScheduler(UnCLIPSchedulerConfig config) : config_(std::move(config)) {
  betas_ = betas_for_alpha_bar(config_.num_train_timesteps);
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = at::cumprod(alphas_, 0);
  one_ = at::scalar_tensor(1.0, at::kFloat);
  timesteps_ = at::arange(config_.num_train_timesteps - 1, -1, -1, at::kLong);
}

void UnCLIPScheduler::set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                                    const std::vector<double>& timesteps, const std::vector<double>& sigmas) {
  if (!timesteps.empty() || !sigmas.empty()) {
    throw ValueError("UnCLIPScheduler.set_timesteps takes num_inference_steps only (no custom timesteps or sigmas)");
  }
  // diffusers divides by (n - 1): n = 1 is a ZeroDivisionError there, so it is refused here.
  if (!num_inference_steps || *num_inference_steps < 2) {
    throw ValueError("`num_inference_steps` must be an integer of at least 2 for UnCLIPScheduler.set_timesteps");
  }
  const int64_t n = *num_inference_steps;
  // Ref: diffusers UnCLIPScheduler.set_timesteps: np.arange(n) * ((T - 1) / (n - 1)), rounded
  // half to even, reversed. No upper bound on n in diffusers; more steps than T repeat timesteps.
  const double step_ratio = static_cast<double>(config_.num_train_timesteps - 1) / static_cast<double>(n - 1);
  std::vector<int64_t> ts;
  ts.reserve(static_cast<std::size_t>(n));
  for (int64_t i = n - 1; i >= 0; --i) ts.push_back(static_cast<int64_t>(np_round(static_cast<double>(i) * step_ratio)));
  num_inference_steps_ = n;
  timesteps_ = to_tensor(ts);
  if (device) timesteps_ = timesteps_.to(*device);
}

at::Tensor UnCLIPScheduler::get_variance(int64_t t, int64_t prev_timestep, const at::Tensor& predicted_variance) const {
  const at::Tensor alpha_prod_t = alphas_cumprod_[t];
  const at::Tensor alpha_prod_t_prev = alpha_prod_prev(prev_timestep);
  const at::Tensor beta_prod_t = 1 - alpha_prod_t;
  const at::Tensor beta_prod_t_prev = 1 - alpha_prod_t_prev;
  const at::Tensor beta = prev_timestep == t - 1 ? betas_[t] : 1 - alpha_prod_t / alpha_prod_t_prev;
  // For t > 0, the posterior variance beta~_t (formula (7) of the DDPM paper).
  at::Tensor variance = beta_prod_t_prev / beta_prod_t * beta;
  if (config_.variance_type == "fixed_small_log") {
    // The standard deviation itself: step does not take its root.
    return at::exp(0.5 * at::log(at::clamp(variance, 1e-20)));
  }
  // learned_range: the model interpolates between the two log-variances (no clamp, as diffusers).
  const at::Tensor min_log = at::log(variance);
  const at::Tensor max_log = at::log(beta);
  const at::Tensor frac = (predicted_variance + 1) / 2;
  return frac * max_log + (1 - frac) * min_log;
}

SchedulerOutput UnCLIPScheduler::step(const at::Tensor& model_output_in, const at::Tensor& timestep,
                                      const at::Tensor& sample, const StepOptions& o) {
  // Ref: diffusers scheduling_unclip.py, step.
  if (timestep.numel() != 1) throw ValueError("UnCLIPScheduler.step takes one timestep, got " + std::to_string(timestep.numel()));
  const int64_t t = timestep.item<int64_t>();
  const int64_t T = config_.num_train_timesteps;
  const int64_t prev_t = o.prev_timestep.value_or(t - 1);
  if (t < 0 || t >= T || prev_t >= T) {
    throw ValueError("timestep " + std::to_string(t) + " / prev_timestep " + std::to_string(prev_t) +
                     " out of range for num_train_timesteps=" + std::to_string(T));
  }
  at::Tensor model_output = model_output_in;
  at::Tensor predicted_variance;
  if (sample.dim() >= 2 && model_output.dim() >= 2 && model_output.size(1) == sample.size(1) * 2 &&
      config_.variance_type == "learned_range") {
    const std::vector<at::Tensor> parts = at::split(model_output, sample.size(1), 1);
    model_output = parts[0];
    predicted_variance = parts[1];
  }
  // 1. alphas, betas; recomputed from the step's own span when it skips timesteps
  const at::Tensor alpha_prod_t = alphas_cumprod_[t];
  const at::Tensor alpha_prod_t_prev = alpha_prod_prev(prev_t);
  const at::Tensor beta_prod_t = 1 - alpha_prod_t;
  const at::Tensor beta_prod_t_prev = 1 - alpha_prod_t_prev;
  at::Tensor beta, alpha;
  if (prev_t == t - 1) {
    beta = betas_[t];
    alpha = alphas_[t];
  } else {
    beta = 1 - alpha_prod_t / alpha_prod_t_prev;
    alpha = 1 - beta;
  }
  // 2. predicted original sample, formula (15) of the DDPM paper
  at::Tensor pred_original_sample;
  if (config_.prediction_type == PredictionType::kEpsilon) {
    pred_original_sample = (sample - at::pow(beta_prod_t, 0.5) * model_output) / at::pow(alpha_prod_t, 0.5);
  } else {
    pred_original_sample = model_output;
  }
  // 3. clip "predicted x_0"
  if (config_.clip_sample) {
    pred_original_sample = at::clamp(pred_original_sample, -config_.clip_sample_range, config_.clip_sample_range);
  }
  // 4-5. posterior mean mu~_t(x_t, x_0), formula (7)
  const at::Tensor pred_original_sample_coeff = (at::pow(alpha_prod_t_prev, 0.5) * beta) / beta_prod_t;
  const at::Tensor current_sample_coeff = at::pow(alpha, 0.5) * beta_prod_t_prev / beta_prod_t;
  at::Tensor pred_prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * sample;
  // 6. add noise
  if (t > 0) {
    if (config_.variance_type == "learned_range" && !predicted_variance.defined()) {
      throw ValueError(
          "UnCLIPScheduler with variance_type \"learned_range\" needs a model output with twice the sample's "
          "channels (the second half is the variance)");
    }
    const at::Tensor variance_noise =
        randn_tensor(model_output.sizes(), o.generators, model_output.device(), model_output.scalar_type());
    at::Tensor variance = get_variance(t, prev_t, predicted_variance);
    if (config_.variance_type == "learned_range") variance = at::exp(0.5 * variance);
    pred_prev_sample = pred_prev_sample + variance * variance_noise;
  }
  return {pred_prev_sample, pred_original_sample};
}

}  // namespace nd
