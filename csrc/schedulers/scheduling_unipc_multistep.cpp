#include "schedulers/scheduling_unipc_multistep.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"

namespace nd {
namespace {

// Ref: diffusers UniPCMultistepScheduler._sigma_to_alpha_sigma_t (non-flow sigmas).
std::pair<at::Tensor, at::Tensor> sigma_to_alpha_sigma_t(const at::Tensor& sigma) {
  const at::Tensor alpha_t = 1 / at::pow(at::pow(sigma, 2) + 1, 0.5);
  return {alpha_t, sigma * alpha_t};
}

at::Tensor lambda_of(const at::Tensor& alpha, const at::Tensor& sigma) { return at::log(alpha) - at::log(sigma); }

// The B(h) coefficients shared by predictor and corrector (Ref: diffusers
// multistep_uni_p_bh_update / multistep_uni_c_bh_update): R[i][k] = rks[k]^i and
// b[i] = h phi_{i+1}(h) * i! / B(h), with phi_k built by the recurrence diffusers uses.
struct UniCoefficients {
  at::Tensor R, b, h_phi_1, B_h;
};

UniCoefficients uni_coefficients(const at::Tensor& rks, const at::Tensor& h, int64_t order, bool predict_x0,
                                 const std::string& solver_type) {
  const at::Tensor hh = predict_x0 ? -h : h;
  const at::Tensor h_phi_1 = at::expm1(hh);  // h phi_1(h) = e^h - 1
  at::Tensor h_phi_k = h_phi_1 / hh - 1;
  int64_t factorial_i = 1;
  const at::Tensor B_h = solver_type == "bh1" ? hh : at::expm1(hh);
  std::vector<at::Tensor> R, b;
  for (int64_t i = 1; i <= order; ++i) {
    R.push_back(at::pow(rks, i - 1));
    b.push_back(h_phi_k * factorial_i / B_h);
    factorial_i *= i + 1;
    h_phi_k = h_phi_k / hh - 1.0 / static_cast<double>(factorial_i);
  }
  return {at::stack(R), at::stack(b), h_phi_1, B_h};
}

}  // namespace

UniPCMultistepSchedulerConfig UniPCMultistepSchedulerConfig::from_json(const io::JsonConfig& json) {
  UniPCMultistepSchedulerConfig c;
  c.read_base(json, {PredictionType::kEpsilon, PredictionType::kSample, PredictionType::kVPrediction});
  c.solver_order = json.get_int("solver_order", c.solver_order);
  if (c.solver_order < 1) json.fail("solver_order", "expected at least 1");
  c.thresholding = json.get_bool("thresholding", c.thresholding);
  c.dynamic_thresholding_ratio = json.get_double("dynamic_thresholding_ratio", c.dynamic_thresholding_ratio);
  c.sample_max_value = json.get_double("sample_max_value", c.sample_max_value);
  c.predict_x0 = json.get_bool("predict_x0", c.predict_x0);
  c.solver_type = json.get_string("solver_type", c.solver_type);
  // Ref: diffusers __init__: DPM-Solver/DEIS solver types are registered as bh2.
  if (c.solver_type == "midpoint" || c.solver_type == "heun" || c.solver_type == "logrho") c.solver_type = "bh2";
  check_choice(json, "solver_type", c.solver_type, {"bh1", "bh2"});
  c.lower_order_final = json.get_bool("lower_order_final", c.lower_order_final);
  if (json.has_value("disable_corrector")) c.disable_corrector = json.get_int_list("disable_corrector");
  if (json.has_value("solver_p")) {
    json.fail("solver_p", "unsupported value (a scheduler as UniPC's predictor is not implemented)");
  }
  c.use_karras_sigmas = json.get_bool("use_karras_sigmas", c.use_karras_sigmas);
  c.use_exponential_sigmas = json.get_bool("use_exponential_sigmas", c.use_exponential_sigmas);
  c.use_beta_sigmas = json.get_bool("use_beta_sigmas", c.use_beta_sigmas);
  if (c.use_beta_sigmas) json.fail("use_beta_sigmas", "unsupported value true (beta sigmas are not implemented)");
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
  c.rescale_betas_zero_snr = json.get_bool("rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  c.use_dynamic_shifting = json.get_bool("use_dynamic_shifting", c.use_dynamic_shifting);
  c.time_shift_type = json.get_string("time_shift_type", c.time_shift_type);
  if (json.has_value("sigma_min")) c.sigma_min = json.get_double("sigma_min");
  if (json.has_value("sigma_max")) c.sigma_max = json.get_double("sigma_max");
  if (json.has_value("shift_terminal")) {
    json.fail("shift_terminal", "`shift_terminal` is only supported when `use_flow_sigmas=True`.");
  }
  return c;
}

io::Json UniPCMultistepSchedulerConfig::to_json() const {
  io::Json out = io::Json::object();
  write_base(out);
  out["solver_order"] = solver_order;
  out["thresholding"] = thresholding;
  out["dynamic_thresholding_ratio"] = dynamic_thresholding_ratio;
  out["sample_max_value"] = sample_max_value;
  out["predict_x0"] = predict_x0;
  out["solver_type"] = solver_type;
  out["lower_order_final"] = lower_order_final;
  out["disable_corrector"] = disable_corrector;
  out["solver_p"] = nullptr;
  out["use_karras_sigmas"] = use_karras_sigmas;
  out["use_exponential_sigmas"] = use_exponential_sigmas;
  out["use_beta_sigmas"] = use_beta_sigmas;
  out["use_flow_sigmas"] = use_flow_sigmas;
  out["flow_shift"] = flow_shift;
  out["final_sigmas_type"] = final_sigmas_type;
  out["rescale_betas_zero_snr"] = rescale_betas_zero_snr;
  out["use_dynamic_shifting"] = use_dynamic_shifting;
  out["time_shift_type"] = time_shift_type;
  out["sigma_min"] = sigma_min ? io::Json(*sigma_min) : io::Json(nullptr);
  out["sigma_max"] = sigma_max ? io::Json(*sigma_max) : io::Json(nullptr);
  out["shift_terminal"] = nullptr;
  return out;
}

UniPCMultistepScheduler::UniPCMultistepScheduler(UniPCMultistepSchedulerConfig config) : config_(std::move(config)) {
  betas_ = make_betas(config_, "UniPCMultistepScheduler config");
  if (config_.rescale_betas_zero_snr) betas_ = rescale_zero_terminal_snr(betas_);
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = at::cumprod(alphas_, 0);
  // Ref: diffusers: keep the final alpha product off exact zero so its sigma stays finite.
  if (config_.rescale_betas_zero_snr) alphas_cumprod_[-1] = std::pow(2.0, -24);
  sigmas_ = at::pow((1 - alphas_cumprod_) / alphas_cumprod_, 0.5);
  std::vector<double> ts = np_linspace(0, static_cast<double>(config_.num_train_timesteps - 1),
                                       config_.num_train_timesteps);
  std::reverse(ts.begin(), ts.end());
  timesteps_ = to_tensor(ts, at::kFloat);
  model_outputs_.assign(config_.solver_order, at::Tensor());
}

void UniPCMultistepScheduler::set_timesteps(std::optional<int64_t> num_inference_steps,
                                            std::optional<c10::Device> device,
                                            const std::vector<double>& custom_timesteps,
                                            const std::vector<double>& custom_sigmas) {
  // Ref: diffusers UniPCMultistepScheduler.set_timesteps.
  if (!custom_sigmas.empty()) {
    throw ValueError(
        "Passing `sigmas` is only supported when `use_flow_sigmas=True`. Please set `use_flow_sigmas=True` during "
        "scheduler initialization.");
  }
  if (!custom_timesteps.empty()) {
    throw ValueError(
        "The current scheduler class UniPCMultistepScheduler's `set_timesteps` does not support custom timestep "
        "schedules. Please check whether you are using the correct scheduler.");
  }
  if (!num_inference_steps || *num_inference_steps < 1) {
    throw ValueError("`num_inference_steps` must be a positive integer for UniPCMultistepScheduler.set_timesteps");
  }
  const int64_t n = *num_inference_steps;
  const int64_t T = config_.num_train_timesteps;
  std::vector<double> ts;  // float64 values before the int64 cast
  if (config_.timestep_spacing == TimestepSpacing::kLinspace) {
    const std::vector<double> v = np_linspace(0, static_cast<double>(T - 1), n + 1);
    for (int64_t i = n; i >= 1; --i) ts.push_back(np_round(v[i]));
  } else if (config_.timestep_spacing == TimestepSpacing::kLeading) {
    const int64_t ratio = T / (n + 1);
    for (int64_t i = n; i >= 1; --i) ts.push_back(static_cast<double>(i * ratio + config_.steps_offset));
  } else {
    const double ratio = static_cast<double>(T) / static_cast<double>(n);
    for (double v : np_arange(static_cast<double>(T), 0, -ratio)) ts.push_back(np_round(v) - 1);
  }
  const std::vector<float> train = train_sigmas(alphas_cumprod_);
  const std::vector<float> log_sigmas = log_of(train);
  std::vector<double> sigmas;
  double sigma_last = 0.0;
  if (config_.use_karras_sigmas || config_.use_exponential_sigmas) {
    // The flipped training sigmas: their last entry (sigma_min) is the first training sigma.
    const double smin = config_.sigma_min.value_or(static_cast<double>(train.front()));
    const double smax = config_.sigma_max.value_or(static_cast<double>(train.back()));
    sigmas = config_.use_karras_sigmas ? convert_to_karras(smin, smax, n) : convert_to_exponential(smin, smax, n);
    ts.clear();
    for (double s : sigmas) {
      const double t = sigma_to_t(s, log_sigmas);
      ts.push_back(config_.use_karras_sigmas ? np_round(t) : t);  // diffusers rounds only Karras timesteps
    }
    if (config_.final_sigmas_type == "sigma_min") sigma_last = sigmas.back();
  } else {
    sigmas = np_interp(ts, std::vector<double>(train.begin(), train.end()));
    if (config_.final_sigmas_type == "sigma_min") sigma_last = static_cast<double>(train.front());
  }
  sigmas.push_back(sigma_last);
  sigmas_ = to_tensor(sigmas, at::kFloat);
  std::vector<int64_t> ts_int;
  for (double t : ts) ts_int.push_back(static_cast<int64_t>(t));  // numpy float -> int64 truncates
  timesteps_ = to_tensor(ts_int);
  if (device) timesteps_ = timesteps_.to(*device);
  num_inference_steps_ = static_cast<int64_t>(ts_int.size());
  model_outputs_.assign(config_.solver_order, at::Tensor());
  lower_order_nums_ = 0;
  last_sample_ = at::Tensor();
  step_index_.reset();
  begin_index_.reset();
}

at::Tensor UniPCMultistepScheduler::convert_model_output(const at::Tensor& model_output,
                                                         const at::Tensor& sample) const {
  // Ref: diffusers scheduling_unipc_multistep.py, convert_model_output.
  const at::Tensor sigma = sigmas_[*step_index_];
  const auto [alpha_t, sigma_t] = sigma_to_alpha_sigma_t(sigma);
  if (config_.predict_x0) {
    at::Tensor x0_pred;
    switch (config_.prediction_type) {
      case PredictionType::kEpsilon: x0_pred = (sample - sigma_t * model_output) / alpha_t; break;
      case PredictionType::kSample: x0_pred = model_output; break;
      case PredictionType::kVPrediction: x0_pred = alpha_t * sample - sigma_t * model_output; break;
    }
    if (config_.thresholding) {
      x0_pred = threshold_sample(x0_pred, config_.dynamic_thresholding_ratio, config_.sample_max_value);
    }
    return x0_pred;
  }
  switch (config_.prediction_type) {
    case PredictionType::kEpsilon: return model_output;
    case PredictionType::kSample: return (sample - alpha_t * model_output) / sigma_t;
    case PredictionType::kVPrediction: return alpha_t * model_output + sigma_t * sample;
  }
  return model_output;
}

at::Tensor UniPCMultistepScheduler::multistep_uni_p_bh_update(const at::Tensor& sample, int64_t order) const {
  // Ref: diffusers multistep_uni_p_bh_update (UniP with B(h)).
  // Coefficients go to the device without blocking: from pageable memory the copy is staged at once
  // and never waits for the GPU.
  const c10::Device device = sample.device();
  const int64_t step = *step_index_;
  const at::Tensor& m0 = model_outputs_.back();
  const at::Tensor& x = sample;
  const auto [alpha_t, sigma_t] = sigma_to_alpha_sigma_t(sigmas_[step + 1].to(device, /*non_blocking=*/true));
  const auto [alpha_s0, sigma_s0] = sigma_to_alpha_sigma_t(sigmas_[step].to(device, /*non_blocking=*/true));
  const at::Tensor lambda_s0 = lambda_of(alpha_s0, sigma_s0);
  const at::Tensor h = lambda_of(alpha_t, sigma_t) - lambda_s0;
  std::vector<at::Tensor> rks, D1s;
  for (int64_t i = 1; i < order; ++i) {
    const int64_t si = step - i;
    const at::Tensor& mi = model_outputs_[model_outputs_.size() - 1 - i];
    const auto [alpha_si, sigma_si] = sigma_to_alpha_sigma_t(sigmas_[si].to(device, /*non_blocking=*/true));
    const at::Tensor rk = (lambda_of(alpha_si, sigma_si) - lambda_s0) / h;
    rks.push_back(rk);
    D1s.push_back((mi - m0) / rk);
  }
  rks.push_back(at::ones({}, at::TensorOptions().device(device)));
  const UniCoefficients c = uni_coefficients(at::stack(rks), h, order, config_.predict_x0, config_.solver_type);
  // diffusers' `pred_res = 0` at first order. It is still multiplied by B(h) below: with bh1 and a
  // zero final sigma B(h) = -inf, and diffusers' last step is then NaN; so is this one.
  at::Tensor pred_res = at::zeros({}, at::TensorOptions().dtype(at::kLong).device(device));
  if (!D1s.empty()) {
    // Second order has a closed form; higher orders solve the order-conditions system.
    const at::Tensor rhos_p =
        order == 2 ? at::ones({1}, at::TensorOptions().dtype(x.scalar_type()).device(device)) * 0.5
                   : at::linalg_solve(c.R.slice(0, 0, -1).slice(1, 0, -1), c.b.slice(0, 0, -1)).to(device, /*non_blocking=*/true).to(
                         x.scalar_type());
    pred_res = at::einsum("k,bkc...->bc...", {rhos_p, at::stack(D1s, 1)});
  }
  at::Tensor x_t;
  if (config_.predict_x0) {
    const at::Tensor x_t_ = sigma_t / sigma_s0 * x - alpha_t * c.h_phi_1 * m0;
    x_t = x_t_ - alpha_t * c.B_h * pred_res;
  } else {
    const at::Tensor x_t_ = alpha_t / alpha_s0 * x - sigma_t * c.h_phi_1 * m0;
    x_t = x_t_ - sigma_t * c.B_h * pred_res;
  }
  return x_t.to(x.scalar_type());
}

at::Tensor UniPCMultistepScheduler::multistep_uni_c_bh_update(const at::Tensor& this_model_output,
                                                              const at::Tensor& last_sample,
                                                              const at::Tensor& this_sample, int64_t order) const {
  // Ref: diffusers multistep_uni_c_bh_update (UniC with B(h)): runs before model_outputs takes
  // this step's output, so m0 is the previous step's.
  const c10::Device device = this_sample.device();
  const int64_t step = *step_index_;
  const at::Tensor& m0 = model_outputs_.back();
  const at::Tensor& x = last_sample;
  const auto [alpha_t, sigma_t] = sigma_to_alpha_sigma_t(sigmas_[step].to(device, /*non_blocking=*/true));
  const auto [alpha_s0, sigma_s0] = sigma_to_alpha_sigma_t(sigmas_[step - 1].to(device, /*non_blocking=*/true));
  const at::Tensor lambda_s0 = lambda_of(alpha_s0, sigma_s0);
  const at::Tensor h = lambda_of(alpha_t, sigma_t) - lambda_s0;
  std::vector<at::Tensor> rks, D1s;
  for (int64_t i = 1; i < order; ++i) {
    const int64_t si = step - (i + 1);
    const at::Tensor& mi = model_outputs_[model_outputs_.size() - 1 - i];
    const auto [alpha_si, sigma_si] = sigma_to_alpha_sigma_t(sigmas_[si].to(device, /*non_blocking=*/true));
    const at::Tensor rk = (lambda_of(alpha_si, sigma_si) - lambda_s0) / h;
    rks.push_back(rk);
    D1s.push_back((mi - m0) / rk);
  }
  rks.push_back(at::ones({}, at::TensorOptions().device(device)));
  const UniCoefficients c = uni_coefficients(at::stack(rks), h, order, config_.predict_x0, config_.solver_type);
  const at::Tensor rhos_c = order == 1 ? at::ones({1}, at::TensorOptions().dtype(x.scalar_type()).device(device)) * 0.5
                                       : at::linalg_solve(c.R, c.b).to(device, /*non_blocking=*/true).to(x.scalar_type());
  const at::Tensor D1_t = this_model_output - m0;
  // diffusers' corr_res + rhos_c[-1] * D1_t, with corr_res = 0 at first order.
  at::Tensor correction = rhos_c[-1] * D1_t;
  if (!D1s.empty()) {
    correction = at::einsum("k,bkc...->bc...", {rhos_c.slice(0, 0, -1), at::stack(D1s, 1)}) + correction;
  }
  at::Tensor x_t;
  if (config_.predict_x0) {
    const at::Tensor x_t_ = sigma_t / sigma_s0 * x - alpha_t * c.h_phi_1 * m0;
    x_t = x_t_ - alpha_t * c.B_h * correction;
  } else {
    const at::Tensor x_t_ = alpha_t / alpha_s0 * x - sigma_t * c.h_phi_1 * m0;
    x_t = x_t_ - sigma_t * c.B_h * correction;
  }
  return x_t.to(x.scalar_type());
}

SchedulerOutput UniPCMultistepScheduler::step(const at::Tensor& model_output, const at::Tensor& timestep,
                                              const at::Tensor& sample_in, const StepOptions& /*options*/) {
  // Ref: diffusers scheduling_unipc_multistep.py, step.
  require_timesteps_set();
  if (!step_index_) init_step_index(timestep, /*fallback_to_last=*/true);
  const int64_t i = *step_index_;
  const bool corrector_disabled = std::find(config_.disable_corrector.begin(), config_.disable_corrector.end(),
                                            i - 1) != config_.disable_corrector.end();
  const bool use_corrector = i > 0 && !corrector_disabled && last_sample_.defined();
  const at::Tensor model_output_convert = convert_model_output(model_output, sample_in);
  at::Tensor sample = sample_in;
  if (use_corrector) sample = multistep_uni_c_bh_update(model_output_convert, last_sample_, sample, this_order_);
  for (int64_t k = 0; k + 1 < config_.solver_order; ++k) model_outputs_[k] = model_outputs_[k + 1];
  model_outputs_.back() = model_output_convert;
  // Lower orders near the end (lower_order_final) and while warming up the history.
  const int64_t len = timesteps_.size(0);
  const int64_t this_order = config_.lower_order_final ? std::min(config_.solver_order, len - i) : config_.solver_order;
  this_order_ = std::min(this_order, lower_order_nums_ + 1);
  last_sample_ = sample;
  const at::Tensor prev_sample = multistep_uni_p_bh_update(sample, this_order_);
  if (lower_order_nums_ < config_.solver_order) ++lower_order_nums_;
  *step_index_ += 1;
  return {prev_sample, at::Tensor()};
}

at::Tensor UniPCMultistepScheduler::add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                                              const at::Tensor& timesteps) {
  const at::Tensor sigma = sigmas_for_add_noise(original_samples, timesteps, /*fallback_to_last=*/true);
  const auto [alpha_t, sigma_t] = sigma_to_alpha_sigma_t(sigma);
  return alpha_t * original_samples + sigma_t * noise;
}

}  // namespace nd
