#include "schedulers/scheduling_ddim.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/errors.h"
#include "core/random.h"

namespace nd {

DDIMSchedulerConfig DDIMSchedulerConfig::from_json(const io::JsonConfig& json) {
  DDIMSchedulerConfig c;
  c.read_base(json, {PredictionType::kEpsilon, PredictionType::kSample, PredictionType::kVPrediction});
  c.clip_sample = json.get_bool("clip_sample", c.clip_sample);
  c.set_alpha_to_one = json.get_bool("set_alpha_to_one", c.set_alpha_to_one);
  c.thresholding = json.get_bool("thresholding", c.thresholding);
  c.dynamic_thresholding_ratio = json.get_double("dynamic_thresholding_ratio", c.dynamic_thresholding_ratio);
  c.clip_sample_range = json.get_double("clip_sample_range", c.clip_sample_range);
  c.sample_max_value = json.get_double("sample_max_value", c.sample_max_value);
  c.rescale_betas_zero_snr = json.get_bool("rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  return c;
}

io::Json DDIMSchedulerConfig::to_json() const {
  io::Json out = io::Json::object();
  write_base(out);
  out["clip_sample"] = clip_sample;
  out["set_alpha_to_one"] = set_alpha_to_one;
  out["thresholding"] = thresholding;
  out["dynamic_thresholding_ratio"] = dynamic_thresholding_ratio;
  out["clip_sample_range"] = clip_sample_range;
  out["sample_max_value"] = sample_max_value;
  out["rescale_betas_zero_snr"] = rescale_betas_zero_snr;
  return out;
}

DDIMScheduler::DDIMScheduler(DDIMSchedulerConfig config) : config_(std::move(config)) {
  betas_ = make_betas(config_, "DDIMScheduler config");
  if (config_.rescale_betas_zero_snr) betas_ = rescale_zero_terminal_snr(betas_);
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = at::cumprod(alphas_, 0);
  final_alpha_cumprod_ = config_.set_alpha_to_one ? at::scalar_tensor(1.0, at::kFloat) : alphas_cumprod_[0];
  timesteps_ = at::arange(config_.num_train_timesteps - 1, -1, -1, at::kLong);
}

void DDIMScheduler::set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                                  const std::vector<double>& timesteps, const std::vector<double>& sigmas) {
  if (!timesteps.empty() || !sigmas.empty()) {
    throw ValueError(
        "The current scheduler class DDIMScheduler's `set_timesteps` does not support custom timestep or sigma "
        "schedules. Please check whether you are using the correct scheduler.");
  }
  if (!num_inference_steps || *num_inference_steps < 1) {
    throw ValueError("`num_inference_steps` must be a positive integer for DDIMScheduler.set_timesteps");
  }
  const int64_t n = *num_inference_steps;
  const int64_t T = config_.num_train_timesteps;
  if (n > T) {
    throw ValueError("`num_inference_steps`: " + std::to_string(n) +
                     " cannot be larger than `self.config.train_timesteps`: " + std::to_string(T) +
                     " as the unet model trained with this scheduler can only handle maximal " + std::to_string(T) +
                     " timesteps.");
  }
  num_inference_steps_ = n;
  // Ref: diffusers DDIMScheduler.set_timesteps (descending int64).
  std::vector<int64_t> ts;
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
  check_timesteps_index_alphas(ts, config_, n, "DDIMScheduler");
  timesteps_ = to_tensor(ts);
  if (device) timesteps_ = timesteps_.to(*device);
}

at::Tensor DDIMScheduler::get_variance(int64_t timestep, int64_t prev_timestep) const {
  const at::Tensor alpha_prod_t = alphas_cumprod_[timestep];
  const at::Tensor alpha_prod_t_prev = prev_timestep >= 0 ? alphas_cumprod_[prev_timestep] : final_alpha_cumprod_;
  const at::Tensor beta_prod_t = 1 - alpha_prod_t;
  const at::Tensor beta_prod_t_prev = 1 - alpha_prod_t_prev;
  return (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev);
}

SchedulerOutput DDIMScheduler::step(const at::Tensor& model_output, const at::Tensor& timestep_tensor,
                                    const at::Tensor& sample, const StepOptions& options) {
  // Ref: diffusers scheduling_ddim.py, step (formula (12) of the DDIM paper).
  require_timesteps_set();
  const int64_t timestep = timestep_tensor.item<int64_t>();
  // 1. previous step value (t - 1)
  const int64_t prev_timestep = timestep - config_.num_train_timesteps / *num_inference_steps_;
  // 2. alphas, betas
  const at::Tensor alpha_prod_t = alphas_cumprod_[timestep];
  const at::Tensor alpha_prod_t_prev = prev_timestep >= 0 ? alphas_cumprod_[prev_timestep] : final_alpha_cumprod_;
  const at::Tensor beta_prod_t = 1 - alpha_prod_t;
  // 3. predicted original sample ("predicted x_0") and epsilon
  at::Tensor pred_original_sample, pred_epsilon;
  switch (config_.prediction_type) {
    case PredictionType::kEpsilon:
      pred_original_sample = (sample - at::pow(beta_prod_t, 0.5) * model_output) / at::pow(alpha_prod_t, 0.5);
      pred_epsilon = model_output;
      break;
    case PredictionType::kSample:
      pred_original_sample = model_output;
      pred_epsilon = (sample - at::pow(alpha_prod_t, 0.5) * pred_original_sample) / at::pow(beta_prod_t, 0.5);
      break;
    case PredictionType::kVPrediction:
      pred_original_sample = at::pow(alpha_prod_t, 0.5) * sample - at::pow(beta_prod_t, 0.5) * model_output;
      pred_epsilon = at::pow(alpha_prod_t, 0.5) * model_output + at::pow(beta_prod_t, 0.5) * sample;
      break;
  }
  // 4. clip or threshold "predicted x_0"
  if (config_.thresholding) {
    pred_original_sample =
        threshold_sample(pred_original_sample, config_.dynamic_thresholding_ratio, config_.sample_max_value);
  } else if (config_.clip_sample) {
    pred_original_sample = pred_original_sample.clamp(-config_.clip_sample_range, config_.clip_sample_range);
  }
  // 5. variance sigma_t(eta)
  const at::Tensor variance = get_variance(timestep, prev_timestep);
  const at::Tensor std_dev_t = options.eta * at::pow(variance, 0.5);
  if (options.use_clipped_model_output) {
    pred_epsilon = (sample - at::pow(alpha_prod_t, 0.5) * pred_original_sample) / at::pow(beta_prod_t, 0.5);
  }
  // 6-7. direction pointing to x_t, then x_t-1 without noise
  const at::Tensor pred_sample_direction = at::pow(1 - alpha_prod_t_prev - at::pow(std_dev_t, 2), 0.5) * pred_epsilon;
  at::Tensor prev_sample = at::pow(alpha_prod_t_prev, 0.5) * pred_original_sample + pred_sample_direction;
  if (options.eta > 0) {
    if (options.variance_noise.defined() && !options.generators.empty()) {
      throw ValueError(
          "Cannot pass both generator and variance_noise. Please make sure that either `generator` or "
          "`variance_noise` stays `None`.");
    }
    const at::Tensor noise =
        options.variance_noise.defined()
            ? options.variance_noise
            : randn_tensor(model_output.sizes(), options.generators, model_output.device(), model_output.scalar_type());
    prev_sample = prev_sample + std_dev_t * noise;
  }
  return {prev_sample, pred_original_sample};
}

}  // namespace nd
