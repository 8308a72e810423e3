#include "schedulers/scheduling_dpmsolver_multistep.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/random.h"

namespace nd {
namespace {

// Ref: diffusers DPMSolverMultistepScheduler._sigma_to_alpha_sigma_t (non-flow sigmas).
std::pair<at::Tensor, at::Tensor> sigma_to_alpha_sigma_t(const at::Tensor& sigma) {
  const at::Tensor alpha_t = 1 / at::pow(at::pow(sigma, 2) + 1, 0.5);
  return {alpha_t, sigma * alpha_t};
}

at::Tensor lambda_of(const at::Tensor& alpha, const at::Tensor& sigma) { return at::log(alpha) - at::log(sigma); }

}  // namespace

DPMSolverMultistepSchedulerConfig DPMSolverMultistepSchedulerConfig::from_json(const io::JsonConfig& json) {
  DPMSolverMultistepSchedulerConfig c;
  c.read_base(json, {PredictionType::kEpsilon, PredictionType::kSample, PredictionType::kVPrediction});
  c.solver_order = json.get_int("solver_order", c.solver_order);
  if (c.solver_order < 1 || c.solver_order > 3) json.fail("solver_order", "expected 1, 2 or 3");
  c.thresholding = json.get_bool("thresholding", c.thresholding);
  c.dynamic_thresholding_ratio = json.get_double("dynamic_thresholding_ratio", c.dynamic_thresholding_ratio);
  c.sample_max_value = json.get_double("sample_max_value", c.sample_max_value);
  c.algorithm_type = json.get_string("algorithm_type", c.algorithm_type);
  // Ref: diffusers __init__: "deis" configs run as dpmsolver++.
  if (c.algorithm_type == "deis") c.algorithm_type = "dpmsolver++";
  check_choice(json, "algorithm_type", c.algorithm_type, {"dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++"});
  c.solver_type = json.get_string("solver_type", c.solver_type);
  // Ref: diffusers __init__: UniPC/DEIS solver types map to midpoint.
  if (c.solver_type == "logrho" || c.solver_type == "bh1" || c.solver_type == "bh2") c.solver_type = "midpoint";
  check_choice(json, "solver_type", c.solver_type, {"midpoint", "heun"});
  c.lower_order_final = json.get_bool("lower_order_final", c.lower_order_final);
  c.euler_at_final = json.get_bool("euler_at_final", c.euler_at_final);
  c.use_karras_sigmas = json.get_bool("use_karras_sigmas", c.use_karras_sigmas);
  c.use_exponential_sigmas = json.get_bool("use_exponential_sigmas", c.use_exponential_sigmas);
  c.use_beta_sigmas = json.get_bool("use_beta_sigmas", c.use_beta_sigmas);
  if (c.use_beta_sigmas) json.fail("use_beta_sigmas", "unsupported value true (beta sigmas are not implemented)");
  c.use_lu_lambdas = json.get_bool("use_lu_lambdas", c.use_lu_lambdas);
  c.use_flow_sigmas = json.get_bool("use_flow_sigmas", c.use_flow_sigmas);
  if (c.use_flow_sigmas) json.fail("use_flow_sigmas", "unsupported value true (flow sigmas are not implemented)");
  if (c.use_karras_sigmas + c.use_exponential_sigmas + c.use_beta_sigmas > 1) {
    json.fail("use_karras_sigmas",
              "Only one of `config.use_beta_sigmas`, `config.use_exponential_sigmas`, `config.use_karras_sigmas` can "
              "be used");
  }
  c.flow_shift = json.get_double("flow_shift", c.flow_shift);
  c.final_sigmas_type = json.get_string("final_sigmas_type", c.final_sigmas_type);
  check_choice(json, "final_sigmas_type", c.final_sigmas_type, {"zero", "sigma_min"});
  if (!c.data_prediction() && c.final_sigmas_type == "zero") {
    json.fail("final_sigmas_type", "`final_sigmas_type` zero is not supported for `algorithm_type` " +
                                       c.algorithm_type + ". Please choose `sigma_min` instead");
  }
  c.lambda_min_clipped = json.get_double("lambda_min_clipped", c.lambda_min_clipped);
  if (json.has_value("variance_type")) {
    c.variance_type = json.get_string("variance_type");
    check_choice(json, "variance_type", *c.variance_type, {"learned", "learned_range"});
  }
  c.rescale_betas_zero_snr = json.get_bool("rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  c.use_dynamic_shifting = json.get_bool("use_dynamic_shifting", c.use_dynamic_shifting);
  c.time_shift_type = json.get_string("time_shift_type", c.time_shift_type);
  return c;
}

io::Json DPMSolverMultistepSchedulerConfig::to_json() const {
  io::Json out = io::Json::object();
  write_base(out);
  out["solver_order"] = solver_order;
  out["thresholding"] = thresholding;
  out["dynamic_thresholding_ratio"] = dynamic_thresholding_ratio;
  out["sample_max_value"] = sample_max_value;
  out["algorithm_type"] = algorithm_type;
  out["solver_type"] = solver_type;
  out["lower_order_final"] = lower_order_final;
  out["euler_at_final"] = euler_at_final;
  out["use_karras_sigmas"] = use_karras_sigmas;
  out["use_exponential_sigmas"] = use_exponential_sigmas;
  out["use_beta_sigmas"] = use_beta_sigmas;
  out["use_lu_lambdas"] = use_lu_lambdas;
  out["use_flow_sigmas"] = use_flow_sigmas;
  out["flow_shift"] = flow_shift;
  out["final_sigmas_type"] = final_sigmas_type;
  out["lambda_min_clipped"] = std::isfinite(lambda_min_clipped) ? io::Json(lambda_min_clipped) : io::Json(nullptr);
  out["variance_type"] = variance_type ? io::Json(*variance_type) : io::Json(nullptr);
  out["rescale_betas_zero_snr"] = rescale_betas_zero_snr;
  out["use_dynamic_shifting"] = use_dynamic_shifting;
  out["time_shift_type"] = time_shift_type;
  return out;
}

DPMSolverMultistepScheduler::DPMSolverMultistepScheduler(DPMSolverMultistepSchedulerConfig config)
    : config_(std::move(config)) {
  betas_ = make_betas(config_, "DPMSolverMultistepScheduler config");
  if (config_.rescale_betas_zero_snr) betas_ = rescale_zero_terminal_snr(betas_);
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = at::cumprod(alphas_, 0);
  if (config_.rescale_betas_zero_snr) alphas_cumprod_[-1] = std::pow(2.0, -24);
  const at::Tensor alpha_t = at::sqrt(alphas_cumprod_);
  const at::Tensor sigma_t = at::sqrt(1 - alphas_cumprod_);
  lambda_t_ = at::log(alpha_t) - at::log(sigma_t);
  sigmas_ = at::pow((1 - alphas_cumprod_) / alphas_cumprod_, 0.5);
  std::vector<double> ts = np_linspace(0, static_cast<double>(config_.num_train_timesteps - 1),
                                       config_.num_train_timesteps);
  std::reverse(ts.begin(), ts.end());
  timesteps_ = to_tensor(ts, at::kFloat);
  model_outputs_.assign(config_.solver_order, at::Tensor());
}

void DPMSolverMultistepScheduler::set_timesteps(std::optional<int64_t> num_inference_steps,
                                                std::optional<c10::Device> device,
                                                const std::vector<double>& custom_timesteps,
                                                const std::vector<double>& custom_sigmas) {
  // Ref: diffusers DPMSolverMultistepScheduler.set_timesteps.
  if (!custom_sigmas.empty()) {
    throw ValueError(
        "The current scheduler class DPMSolverMultistepScheduler's `set_timesteps` does not support custom sigmas "
        "schedules. Please check whether you are using the correct scheduler.");
  }
  const bool custom = !custom_timesteps.empty();
  if (!custom && (!num_inference_steps || *num_inference_steps < 1)) {
    throw ValueError("Must pass exactly one of `num_inference_steps` or `timesteps`.");
  }
  if (custom && config_.use_karras_sigmas) throw ValueError("Cannot use `timesteps` with `config.use_karras_sigmas = True`");
  if (custom && config_.use_lu_lambdas) throw ValueError("Cannot use `timesteps` with `config.use_lu_lambdas = True`");
  if (custom && config_.use_exponential_sigmas) {
    throw ValueError("Cannot set `timesteps` with `config.use_exponential_sigmas = True`.");
  }
  const int64_t T = config_.num_train_timesteps;
  std::vector<double> ts;  // float64 values before the int64 cast
  if (custom) {
    for (double t : custom_timesteps) ts.push_back(static_cast<double>(static_cast<int64_t>(t)));
  } else {
    const int64_t n = *num_inference_steps;
    // searchsorted(flip(lambda_t), lambda_min_clipped): how many lambdas lie below the clip.
    const at::Tensor clipped = at::searchsorted(at::flip(lambda_t_, {0}), at::scalar_tensor(config_.lambda_min_clipped, at::kFloat));
    const int64_t last_timestep = T - clipped.item<int64_t>();
    if (config_.timestep_spacing == TimestepSpacing::kLinspace) {
      std::vector<double> v = np_linspace(0, static_cast<double>(last_timestep - 1), n + 1);
      for (int64_t i = n; i >= 1; --i) ts.push_back(np_round(v[i]));
    } else if (config_.timestep_spacing == TimestepSpacing::kLeading) {
      const int64_t ratio = last_timestep / (n + 1);
      for (int64_t i = n; i >= 1; --i) ts.push_back(static_cast<double>(i * ratio + config_.steps_offset));
    } else {
      const double ratio = static_cast<double>(T) / static_cast<double>(n);
      for (double v : np_arange(static_cast<double>(last_timestep), 0, -ratio)) {
        ts.push_back(static_cast<double>(static_cast<int64_t>(np_round(v)) - 1));
      }
    }
  }
  const int64_t n = custom ? static_cast<int64_t>(ts.size()) : *num_inference_steps;
  const std::vector<float> train = train_sigmas(alphas_cumprod_);
  const std::vector<float> log_sigmas = log_of(train);
  const bool cosine = config_.beta_schedule == "squaredcos_cap_v2";
  std::vector<double> sigmas;
  if (config_.use_karras_sigmas || config_.use_exponential_sigmas) {
    // The flipped training sigmas: sigma_max is the last training sigma, sigma_min the first.
    const double smin = static_cast<double>(train.front()), smax = static_cast<double>(train.back());
    sigmas = config_.use_karras_sigmas ? convert_to_karras(smin, smax, n) : convert_to_exponential(smin, smax, n);
    ts.clear();
    for (double s : sigmas) {
      const double t = sigma_to_t(s, log_sigmas);
      ts.push_back(config_.use_karras_sigmas && !cosine ? np_round(t) : t);
    }
  } else if (config_.use_lu_lambdas) {
    // Ref: diffusers _convert_to_lu (rho = 1): lambdas evenly spaced between the extreme log-sigmas.
    const double lambda_min = static_cast<double>(log_sigmas.front());
    const double lambda_max = static_cast<double>(log_sigmas.back());
    ts.clear();
    for (double r : np_linspace(0, 1, n)) {
      const double s = std::exp(lambda_max + r * (lambda_min - lambda_max));
      sigmas.push_back(s);
      const double t = sigma_to_t(s, log_sigmas);
      ts.push_back(cosine ? t : np_round(t));
    }
  } else {
    sigmas = np_interp(ts, std::vector<double>(train.begin(), train.end()));
  }
  sigmas.push_back(config_.final_sigmas_type == "sigma_min" ? static_cast<double>(train.front()) : 0.0);
  sigmas_ = to_tensor(sigmas, at::kFloat);
  std::vector<int64_t> ts_int;
  for (double t : ts) ts_int.push_back(static_cast<int64_t>(t));  // numpy float -> int64 truncates
  timesteps_ = to_tensor(ts_int);
  if (device) timesteps_ = timesteps_.to(*device);
  num_inference_steps_ = static_cast<int64_t>(ts_int.size());
  model_outputs_.assign(config_.solver_order, at::Tensor());
  lower_order_nums_ = 0;
  step_index_.reset();
  begin_index_.reset();
}

at::Tensor DPMSolverMultistepScheduler::convert_model_output(const at::Tensor& model_output_in,
                                                             const at::Tensor& sample) const {
  // Ref: diffusers scheduling_dpmsolver_multistep.py, convert_model_output.
  at::Tensor model_output = model_output_in;
  const at::Tensor sigma = sigmas_[*step_index_];
  const auto [alpha_t, sigma_t] = sigma_to_alpha_sigma_t(sigma);
  if (config_.data_prediction()) {
    at::Tensor x0_pred;
    switch (config_.prediction_type) {
      case PredictionType::kEpsilon:
        if (config_.variance_type) model_output = model_output.slice(1, 0, 3);
        x0_pred = (sample - sigma_t * model_output) / alpha_t;
        break;
      case PredictionType::kSample: x0_pred = model_output; break;
      case PredictionType::kVPrediction: x0_pred = alpha_t * sample - sigma_t * model_output; break;
    }
    if (config_.thresholding) {
      x0_pred = threshold_sample(x0_pred, config_.dynamic_thresholding_ratio, config_.sample_max_value);
    }
    return x0_pred;
  }
  at::Tensor epsilon;
  switch (config_.prediction_type) {
    case PredictionType::kEpsilon:
      epsilon = config_.variance_type ? model_output.slice(1, 0, 3) : model_output;
      break;
    case PredictionType::kSample: epsilon = (sample - alpha_t * model_output) / sigma_t; break;
    case PredictionType::kVPrediction: epsilon = alpha_t * model_output + sigma_t * sample; break;
  }
  if (config_.thresholding) {
    at::Tensor x0_pred = (sample - sigma_t * epsilon) / alpha_t;
    x0_pred = threshold_sample(x0_pred, config_.dynamic_thresholding_ratio, config_.sample_max_value);
    epsilon = (sample - alpha_t * x0_pred) / sigma_t;
  }
  return epsilon;
}

at::Tensor DPMSolverMultistepScheduler::dpm_solver_first_order_update(const at::Tensor& model_output,
                                                                      const at::Tensor& sample,
                                                                      const at::Tensor& noise) const {
  // Ref: diffusers dpm_solver_first_order_update (DDIM in lambda space).
  const int64_t i = *step_index_;
  const auto [alpha_t, sigma_t] = sigma_to_alpha_sigma_t(sigmas_[i + 1]);
  const auto [alpha_s, sigma_s] = sigma_to_alpha_sigma_t(sigmas_[i]);
  const at::Tensor lambda_t = lambda_of(alpha_t, sigma_t);
  const at::Tensor lambda_s = lambda_of(alpha_s, sigma_s);
  const at::Tensor h = lambda_t - lambda_s;
  const std::string& algo = config_.algorithm_type;
  if (algo == "dpmsolver++") return (sigma_t / sigma_s) * sample - (alpha_t * (at::exp(-h) - 1.0)) * model_output;
  if (algo == "dpmsolver") return (alpha_t / alpha_s) * sample - (sigma_t * (at::exp(h) - 1.0)) * model_output;
  if (algo == "sde-dpmsolver++") {
    return (sigma_t / sigma_s * at::exp(-h)) * sample + (alpha_t * (1 - at::exp(-2.0 * h))) * model_output +
           sigma_t * at::sqrt(1.0 - at::exp(-2 * h)) * noise;
  }
  return (alpha_t / alpha_s) * sample - 2.0 * (sigma_t * (at::exp(h) - 1.0)) * model_output +
         sigma_t * at::sqrt(at::exp(2 * h) - 1.0) * noise;
}

at::Tensor DPMSolverMultistepScheduler::multistep_dpm_solver_second_order_update(const at::Tensor& sample,
                                                                                 const at::Tensor& noise) const {
  // Ref: diffusers multistep_dpm_solver_second_order_update.
  const int64_t i = *step_index_;
  const auto [alpha_t, sigma_t] = sigma_to_alpha_sigma_t(sigmas_[i + 1]);
  const auto [alpha_s0, sigma_s0] = sigma_to_alpha_sigma_t(sigmas_[i]);
  const auto [alpha_s1, sigma_s1] = sigma_to_alpha_sigma_t(sigmas_[i - 1]);
  const at::Tensor lambda_t = lambda_of(alpha_t, sigma_t);
  const at::Tensor lambda_s0 = lambda_of(alpha_s0, sigma_s0);
  const at::Tensor lambda_s1 = lambda_of(alpha_s1, sigma_s1);
  const size_t k = model_outputs_.size();
  const at::Tensor& m0 = model_outputs_[k - 1];
  const at::Tensor& m1 = model_outputs_[k - 2];
  const at::Tensor h = lambda_t - lambda_s0;
  const at::Tensor h_0 = lambda_s0 - lambda_s1;
  const at::Tensor r0 = h_0 / h;
  const at::Tensor& D0 = m0;
  const at::Tensor D1 = (1.0 / r0) * (m0 - m1);
  const std::string& algo = config_.algorithm_type;
  const bool midpoint = config_.solver_type == "midpoint";
  if (algo == "dpmsolver++") {
    if (midpoint) {
      return (sigma_t / sigma_s0) * sample - (alpha_t * (at::exp(-h) - 1.0)) * D0 -
             0.5 * (alpha_t * (at::exp(-h) - 1.0)) * D1;
    }
    return (sigma_t / sigma_s0) * sample - (alpha_t * (at::exp(-h) - 1.0)) * D0 +
           (alpha_t * ((at::exp(-h) - 1.0) / h + 1.0)) * D1;
  }
  if (algo == "dpmsolver") {
    if (midpoint) {
      return (alpha_t / alpha_s0) * sample - (sigma_t * (at::exp(h) - 1.0)) * D0 -
             0.5 * (sigma_t * (at::exp(h) - 1.0)) * D1;
    }
    return (alpha_t / alpha_s0) * sample - (sigma_t * (at::exp(h) - 1.0)) * D0 -
           (sigma_t * ((at::exp(h) - 1.0) / h - 1.0)) * D1;
  }
  if (algo == "sde-dpmsolver++") {
    if (midpoint) {
      return (sigma_t / sigma_s0 * at::exp(-h)) * sample + (alpha_t * (1 - at::exp(-2.0 * h))) * D0 +
             0.5 * (alpha_t * (1 - at::exp(-2.0 * h))) * D1 + sigma_t * at::sqrt(1.0 - at::exp(-2 * h)) * noise;
    }
    return (sigma_t / sigma_s0 * at::exp(-h)) * sample + (alpha_t * (1 - at::exp(-2.0 * h))) * D0 +
           (alpha_t * ((1.0 - at::exp(-2.0 * h)) / (-2.0 * h) + 1.0)) * D1 +
           sigma_t * at::sqrt(1.0 - at::exp(-2 * h)) * noise;
  }
  if (midpoint) {
    return (alpha_t / alpha_s0) * sample - 2.0 * (sigma_t * (at::exp(h) - 1.0)) * D0 -
           (sigma_t * (at::exp(h) - 1.0)) * D1 + sigma_t * at::sqrt(at::exp(2 * h) - 1.0) * noise;
  }
  return (alpha_t / alpha_s0) * sample - 2.0 * (sigma_t * (at::exp(h) - 1.0)) * D0 -
         2.0 * (sigma_t * ((at::exp(h) - 1.0) / h - 1.0)) * D1 + sigma_t * at::sqrt(at::exp(2 * h) - 1.0) * noise;
}

at::Tensor DPMSolverMultistepScheduler::multistep_dpm_solver_third_order_update(const at::Tensor& sample,
                                                                                const at::Tensor& noise) const {
  // Ref: diffusers multistep_dpm_solver_third_order_update.
  const int64_t i = *step_index_;
  const auto [alpha_t, sigma_t] = sigma_to_alpha_sigma_t(sigmas_[i + 1]);
  const auto [alpha_s0, sigma_s0] = sigma_to_alpha_sigma_t(sigmas_[i]);
  const auto [alpha_s1, sigma_s1] = sigma_to_alpha_sigma_t(sigmas_[i - 1]);
  const auto [alpha_s2, sigma_s2] = sigma_to_alpha_sigma_t(sigmas_[i - 2]);
  const at::Tensor lambda_t = lambda_of(alpha_t, sigma_t);
  const at::Tensor lambda_s0 = lambda_of(alpha_s0, sigma_s0);
  const at::Tensor lambda_s1 = lambda_of(alpha_s1, sigma_s1);
  const at::Tensor lambda_s2 = lambda_of(alpha_s2, sigma_s2);
  const size_t k = model_outputs_.size();
  const at::Tensor& m0 = model_outputs_[k - 1];
  const at::Tensor& m1 = model_outputs_[k - 2];
  const at::Tensor& m2 = model_outputs_[k - 3];
  const at::Tensor h = lambda_t - lambda_s0, h_0 = lambda_s0 - lambda_s1, h_1 = lambda_s1 - lambda_s2;
  const at::Tensor r0 = h_0 / h, r1 = h_1 / h;
  const at::Tensor& D0 = m0;
  const at::Tensor D1_0 = (1.0 / r0) * (m0 - m1), D1_1 = (1.0 / r1) * (m1 - m2);
  const at::Tensor D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1);
  const at::Tensor D2 = (1.0 / (r0 + r1)) * (D1_0 - D1_1);
  const std::string& algo = config_.algorithm_type;
  if (algo == "dpmsolver++") {
    return (sigma_t / sigma_s0) * sample - (alpha_t * (at::exp(-h) - 1.0)) * D0 +
           (alpha_t * ((at::exp(-h) - 1.0) / h + 1.0)) * D1 -
           (alpha_t * ((at::exp(-h) - 1.0 + h) / at::pow(h, 2) - 0.5)) * D2;
  }
  if (algo == "dpmsolver") {
    return (alpha_t / alpha_s0) * sample - (sigma_t * (at::exp(h) - 1.0)) * D0 -
           (sigma_t * ((at::exp(h) - 1.0) / h - 1.0)) * D1 -
           (sigma_t * ((at::exp(h) - 1.0 - h) / at::pow(h, 2) - 0.5)) * D2;
  }
  if (algo == "sde-dpmsolver++") {
    return (sigma_t / sigma_s0 * at::exp(-h)) * sample + (alpha_t * (1.0 - at::exp(-2.0 * h))) * D0 +
           (alpha_t * ((1.0 - at::exp(-2.0 * h)) / (-2.0 * h) + 1.0)) * D1 +
           (alpha_t * ((1.0 - at::exp(-2.0 * h) - 2.0 * h) / at::pow(2.0 * h, 2) - 0.5)) * D2 +
           sigma_t * at::sqrt(1.0 - at::exp(-2 * h)) * noise;
  }
  // diffusers returns None here (sde-dpmsolver has no third-order update).
  throw ValueError("DPMSolverMultistepScheduler: algorithm_type sde-dpmsolver has no third-order update");
}

SchedulerOutput DPMSolverMultistepScheduler::step(const at::Tensor& model_output_in, const at::Tensor& timestep,
                                                  const at::Tensor& sample_in, const StepOptions& o) {
  // Ref: diffusers scheduling_dpmsolver_multistep.py, step.
  require_timesteps_set();
  if (!step_index_) init_step_index(timestep, /*fallback_to_last=*/true);
  const int64_t i = *step_index_;
  const int64_t len = timesteps_.size(0);
  // Improves stability below 15 steps, and the final step when the final sigma is zero.
  const bool lower_order_final = (i == len - 1) && (config_.euler_at_final || (config_.lower_order_final && len < 15) ||
                                                    config_.final_sigmas_type == "zero");
  const bool lower_order_second = (i == len - 2) && config_.lower_order_final && len < 15;

  const at::Tensor model_output = convert_model_output(model_output_in, sample_in);
  for (int64_t k = 0; k + 1 < config_.solver_order; ++k) model_outputs_[k] = model_outputs_[k + 1];
  model_outputs_.back() = model_output;

  const at::Tensor sample = sample_in.to(at::kFloat);
  at::Tensor noise;
  if (config_.sde()) {
    noise = o.variance_noise.defined()
                ? o.variance_noise.to(model_output.device()).to(at::kFloat)
                : randn_tensor(model_output.sizes(), o.generators, model_output.device(), at::kFloat);
  }
  at::Tensor prev_sample;
  if (config_.solver_order == 1 || lower_order_nums_ < 1 || lower_order_final) {
    prev_sample = dpm_solver_first_order_update(model_output, sample, noise);
  } else if (config_.solver_order == 2 || lower_order_nums_ < 2 || lower_order_second) {
    prev_sample = multistep_dpm_solver_second_order_update(sample, noise);
  } else {
    prev_sample = multistep_dpm_solver_third_order_update(sample, noise);
  }
  if (lower_order_nums_ < config_.solver_order) ++lower_order_nums_;
  prev_sample = prev_sample.to(model_output.scalar_type());
  *step_index_ += 1;
  return {prev_sample, at::Tensor()};
}

at::Tensor DPMSolverMultistepScheduler::add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                                                  const at::Tensor& timesteps) {
  const at::Tensor sigma = sigmas_for_add_noise(original_samples, timesteps, /*fallback_to_last=*/true);
  const auto [alpha_t, sigma_t] = sigma_to_alpha_sigma_t(sigma);
  return alpha_t * original_samples + sigma_t * noise;
}

}  // namespace nd
