#include "schedulers/scheduling_ddpm.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/errors.h"
#include "core/random.h"

namespace nd {

DDPMSchedulerConfig DDPMSchedulerConfig::from_json(const io::JsonConfig& json) {
  DDPMSchedulerConfig c;
  c.read_base(json, {PredictionType::kEpsilon, PredictionType::kSample, PredictionType::kVPrediction});
  c.variance_type = json.get_string("variance_type", c.variance_type);
  check_choice(json, "variance_type", c.variance_type,
               {"fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range"});
  c.clip_sample = json.get_bool("clip_sample", c.clip_sample);
  c.thresholding = json.get_bool("thresholding", c.thresholding);
  c.dynamic_thresholding_ratio = json.get_double("dynamic_thresholding_ratio", c.dynamic_thresholding_ratio);
  c.clip_sample_range = json.get_double("clip_sample_range", c.clip_sample_range);
  c.sample_max_value = json.get_double("sample_max_value", c.sample_max_value);
  c.rescale_betas_zero_snr = json.get_bool("rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  return c;
}

io::Json DDPMSchedulerConfig::to_json() const {
  io::Json out = io::Json::object();
  write_base(out);
  out["variance_type"] = variance_type;
  out["clip_sample"] = clip_sample;
  out["thresholding"] = thresholding;
  out["dynamic_thresholding_ratio"] = dynamic_thresholding_ratio;
  out["clip_sample_range"] = clip_sample_range;
  out["sample_max_value"] = sample_max_value;
  out["rescale_betas_zero_snr"] = rescale_betas_zero_snr;
  return out;
}

DDPMScheduler::DDPMScheduler(DDPMSchedulerConfig config) : config_(std::move(config)) {
  betas_ = make_betas(config_, "DDPMScheduler config");
  if (config_.rescale_betas_zero_snr) betas_ = rescale_zero_terminal_snr(betas_);
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = at::cumprod(alphas_, 0);
  one_ = at::scalar_tensor(1.0, at::kFloat);
  timesteps_ = at::arange(config_.num_train_timesteps - 1, -1, -1, at::kLong);
}

void DDPMScheduler::set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                                  const std::vector<double>& custom_timesteps, const std::vector<double>& sigmas) {
  // Ref: diffusers DDPMScheduler.set_timesteps.
  if (!sigmas.empty()) {
    throw ValueError(
        "The current scheduler class DDPMScheduler's `set_timesteps` does not support custom sigmas schedules. "
        "Please check whether you are using the correct scheduler.");
  }
  const int64_t T = config_.num_train_timesteps;
  if (num_inference_steps && !custom_timesteps.empty()) {
    throw ValueError("Can only pass one of `num_inference_steps` or `custom_timesteps`.");
  }
  std::vector<int64_t> ts;
  if (!custom_timesteps.empty()) {
    for (size_t i = 1; i < custom_timesteps.size(); ++i) {
      if (custom_timesteps[i] >= custom_timesteps[i - 1]) {
        throw ValueError("`custom_timesteps` must be in descending order.");
      }
    }
    if (custom_timesteps[0] >= static_cast<double>(T)) {
      throw ValueError("`timesteps` must start before `self.config.train_timesteps`: " + std::to_string(T) + ".");
    }
    for (double t : custom_timesteps) ts.push_back(static_cast<int64_t>(t));  // numpy's int64 cast truncates
    custom_timesteps_ = true;
  } else {
    if (!num_inference_steps || *num_inference_steps < 1) {
      throw ValueError("`num_inference_steps` must be a positive integer for DDPMScheduler.set_timesteps");
    }
    const int64_t n = *num_inference_steps;
    if (n > T) {
      throw ValueError("`num_inference_steps`: " + std::to_string(n) +
                       " cannot be larger than `self.config.train_timesteps`: " + std::to_string(T) +
                       " as the unet model trained with this scheduler can only handle maximal " + std::to_string(T) +
                       " timesteps.");
    }
    num_inference_steps_ = n;
    custom_timesteps_ = false;
    if (config_.timestep_spacing == TimestepSpacing::kLinspace) {
      for (double v : np_linspace(0, static_cast<double>(T - 1), n)) ts.push_back(static_cast<int64_t>(np_round(v)));
      std::reverse(ts.begin(), ts.end());
    } else if (config_.timestep_spacing == TimestepSpacing::kLeading) {
      const int64_t ratio = T / n;
      for (int64_t i = n - 1; i >= 0; --i) ts.push_back(i * ratio + config_.steps_offset);
    } else {
      const double ratio = static_cast<double>(T) / static_cast<double>(n);
      for (double v : np_arange(static_cast<double>(T), 0, -ratio)) ts.push_back(static_cast<int64_t>(np_round(v)) - 1);
    }
  }
  if (!custom_timesteps_) check_timesteps_index_alphas(ts, config_, *num_inference_steps_, "DDPMScheduler");
  timesteps_ = to_tensor(ts);
  if (device) timesteps_ = timesteps_.to(*device);
  schedule_ = std::move(ts);
}

int64_t DDPMScheduler::previous_timestep(int64_t timestep) const {
  if (!custom_timesteps_ && !num_inference_steps_) return timestep - 1;
  // The host copy of the schedule: reading timesteps_ on a GPU would wait for it every step.
  const auto found = std::find(schedule_.begin(), schedule_.end(), timestep);
  if (found == schedule_.end()) {
    throw ValueError("timestep " + std::to_string(timestep) +
                     " is not one of the scheduler's timesteps; pass one of `scheduler.timesteps`");
  }
  return found + 1 == schedule_.end() ? -1 : *(found + 1);
}

at::Tensor DDPMScheduler::get_variance(int64_t t, const at::Tensor& predicted_variance) const {
  const int64_t prev_t = previous_timestep(t);
  const at::Tensor alpha_prod_t = alphas_cumprod_[t];
  const at::Tensor alpha_prod_t_prev = alpha_prod_prev(prev_t);
  const at::Tensor current_beta_t = 1 - alpha_prod_t / alpha_prod_t_prev;
  // For t > 0, the posterior variance beta~_t (formula (7)); clamped because the log below
  // must stay finite.
  at::Tensor variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t;
  variance = at::clamp(variance, 1e-20);
  const std::string& type = config_.variance_type;
  if (type == "fixed_small") return variance;
  // fixed_small_log returns the standard deviation itself (step does not take its root).
  if (type == "fixed_small_log") return at::exp(0.5 * at::log(variance));
  if (type == "fixed_large") return current_beta_t;
  if (type == "fixed_large_log") return at::log(current_beta_t);  // "Glide max_log"
  if (!predicted_variance.defined()) {
    throw ValueError("DDPMScheduler with variance_type \"" + type +
                     "\" needs a model output with twice the sample's channels (the second half is the variance)");
  }
  if (type == "learned") return predicted_variance;
  // learned_range: the model interpolates between the two log-variances.
  const at::Tensor min_log = at::log(variance);
  const at::Tensor max_log = at::log(current_beta_t);
  const at::Tensor frac = (predicted_variance + 1) / 2;
  return frac * max_log + (1 - frac) * min_log;
}

SchedulerOutput DDPMScheduler::step(const at::Tensor& model_output_in, const at::Tensor& timestep,
                                    const at::Tensor& sample, const StepOptions& o) {
  // Ref: diffusers scheduling_ddpm.py, step.
  const int64_t t = timestep.item<int64_t>();
  const int64_t prev_t = previous_timestep(t);
  at::Tensor model_output = model_output_in;
  at::Tensor predicted_variance;
  const bool learned = config_.variance_type == "learned" || config_.variance_type == "learned_range";
  if (learned && model_output.size(1) == sample.size(1) * 2) {
    const std::vector<at::Tensor> parts = at::split(model_output, sample.size(1), 1);
    model_output = parts[0];
    predicted_variance = parts[1];
  }
  // 1. alphas, betas
  const at::Tensor alpha_prod_t = alphas_cumprod_[t];
  const at::Tensor alpha_prod_t_prev = alpha_prod_prev(prev_t);
  const at::Tensor beta_prod_t = 1 - alpha_prod_t;
  const at::Tensor beta_prod_t_prev = 1 - alpha_prod_t_prev;
  const at::Tensor current_alpha_t = alpha_prod_t / alpha_prod_t_prev;
  const at::Tensor current_beta_t = 1 - current_alpha_t;
  // 2. predicted original sample, formula (15) of the DDPM paper
  at::Tensor pred_original_sample;
  switch (config_.prediction_type) {
    case PredictionType::kEpsilon:
      pred_original_sample = (sample - at::pow(beta_prod_t, 0.5) * model_output) / at::pow(alpha_prod_t, 0.5);
      break;
    case PredictionType::kSample: pred_original_sample = model_output; break;
    case PredictionType::kVPrediction:
      pred_original_sample = at::pow(alpha_prod_t, 0.5) * sample - at::pow(beta_prod_t, 0.5) * model_output;
      break;
  }
  // 3. clip or threshold "predicted x_0"
  if (config_.thresholding) {
    pred_original_sample =
        threshold_sample(pred_original_sample, config_.dynamic_thresholding_ratio, config_.sample_max_value);
  } else if (config_.clip_sample) {
    pred_original_sample = pred_original_sample.clamp(-config_.clip_sample_range, config_.clip_sample_range);
  }
  // 4-5. posterior mean mu~_t(x_t, x_0), formula (7)
  const at::Tensor pred_original_sample_coeff = (at::pow(alpha_prod_t_prev, 0.5) * current_beta_t) / beta_prod_t;
  const at::Tensor current_sample_coeff = at::pow(current_alpha_t, 0.5) * beta_prod_t_prev / beta_prod_t;
  at::Tensor pred_prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * sample;
  // 6. add noise
  if (t > 0) {
    const at::Tensor variance_noise =
        randn_tensor(model_output.sizes(), o.generators, model_output.device(), model_output.scalar_type());
    const at::Tensor v = get_variance(t, predicted_variance);
    at::Tensor variance;
    if (config_.variance_type == "fixed_small_log") {
      variance = v * variance_noise;
    } else if (config_.variance_type == "learned_range") {
      variance = at::exp(0.5 * v) * variance_noise;
    } else {
      variance = at::pow(v, 0.5) * variance_noise;
    }
    pred_prev_sample = pred_prev_sample + variance;
  }
  return {pred_prev_sample, pred_original_sample};
}

}  // namespace nd
