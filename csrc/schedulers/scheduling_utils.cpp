#include "schedulers/scheduling_utils.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "core/errors.h"
#include "schedulers/scheduling_ddim.h"
#include "schedulers/scheduling_ddpm.h"
#include "schedulers/scheduling_dpmsolver_multistep.h"
#include "schedulers/scheduling_euler_ancestral_discrete.h"
#include "schedulers/scheduling_euler_discrete.h"
#include "schedulers/scheduling_heun_discrete.h"
#include "schedulers/scheduling_lms_discrete.h"
#include "schedulers/scheduling_pndm.h"
#include "schedulers/scheduling_unclip.h"
#include "schedulers/scheduling_unipc_multistep.h"

namespace nd {
namespace {

const std::vector<std::pair<PredictionType, std::string>>& prediction_names() {
  static const std::vector<std::pair<PredictionType, std::string>> names = {
      {PredictionType::kEpsilon, "epsilon"},
      {PredictionType::kSample, "sample"},
      {PredictionType::kVPrediction, "v_prediction"}};
  return names;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "'" : ", '") + s + "'";
  return out;
}

}  // namespace

std::string to_string(PredictionType p) {
  for (const auto& [value, name] : prediction_names()) {
    if (value == p) return name;
  }
  return "epsilon";
}

std::string to_string(TimestepSpacing s) {
  switch (s) {
    case TimestepSpacing::kLinspace: return "linspace";
    case TimestepSpacing::kLeading: return "leading";
    case TimestepSpacing::kTrailing: return "trailing";
  }
  return "linspace";
}

void check_choice(const io::JsonConfig& json, const std::string& key, const std::string& value,
                  const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) {
    json.fail(key, "unsupported value \"" + value + "\" (expected one of " + join(allowed) + ")");
  }
}

PredictionType read_prediction_type(const io::JsonConfig& json, PredictionType fallback,
                                    const std::vector<PredictionType>& allowed) {
  const std::string name = json.get_string("prediction_type", to_string(fallback));
  std::vector<std::string> allowed_names;
  for (PredictionType p : allowed) allowed_names.push_back(to_string(p));
  check_choice(json, "prediction_type", name, allowed_names);
  for (const auto& [value, n] : prediction_names()) {
    if (n == name) return value;
  }
  return fallback;
}

void SchedulerConfigBase::read_base(const io::JsonConfig& json,
                                    const std::vector<PredictionType>& allowed_predictions) {
  num_train_timesteps = json.get_int("num_train_timesteps", num_train_timesteps);
  if (num_train_timesteps < 2) json.fail("num_train_timesteps", "expected at least 2");
  // The betas and cumulative alphas are allocated at load, num_train_timesteps floats each: diffusers
  // allocates whatever the file says (10**9: 4 GB per table); real schedules train on 1000.
  if (num_train_timesteps > kMaxTrainTimesteps) {
    json.fail("num_train_timesteps", "expected at most " + std::to_string(kMaxTrainTimesteps) + ", got " +
                                         std::to_string(num_train_timesteps));
  }
  beta_start = json.get_double("beta_start", beta_start);
  beta_end = json.get_double("beta_end", beta_end);
  // The schedule is float32, as in diffusers, whose torch.linspace then fails at load on an
  // unrepresentable end point without naming the key.
  for (const auto& [key, value] : {std::pair<const char*, double>{"beta_start", beta_start}, {"beta_end", beta_end}}) {
    if (!std::isfinite(value) || std::abs(value) > std::numeric_limits<float>::max()) {
      json.fail(key, "expected a finite float32 number, got " + std::to_string(value));
    }
  }
  beta_schedule = json.get_string("beta_schedule", beta_schedule);
  if (json.has_value("trained_betas")) {
    const io::Json& v = json.json().at("trained_betas");
    if (!v.is_array()) json.fail("trained_betas", "expected a list of numbers, got " + v.dump());
    std::vector<double> betas;
    for (const io::Json& b : v) {
      if (!b.is_number()) json.fail("trained_betas", "expected a list of numbers, got " + b.dump());
      betas.push_back(b.get<double>());
    }
    // diffusers takes the length from the list; the schedule indexes it by training timestep.
    if (static_cast<int64_t>(betas.size()) != num_train_timesteps) {
      json.fail("trained_betas", "expected " + std::to_string(num_train_timesteps) +
                                     " values (num_train_timesteps), got " + std::to_string(betas.size()));
    }
    trained_betas = std::move(betas);
  } else {
    // Ref: diffusers __init__: an unknown schedule raises only when trained_betas is absent.
    check_choice(json, "beta_schedule", beta_schedule, {"linear", "scaled_linear", "squaredcos_cap_v2"});
  }
  prediction_type = read_prediction_type(json, prediction_type, allowed_predictions);
  const std::string spacing = json.get_string("timestep_spacing", to_string(timestep_spacing));
  check_choice(json, "timestep_spacing", spacing, {"linspace", "leading", "trailing"});
  timestep_spacing = spacing == "linspace"  ? TimestepSpacing::kLinspace
                     : spacing == "leading" ? TimestepSpacing::kLeading
                                            : TimestepSpacing::kTrailing;
  steps_offset = json.get_int("steps_offset", steps_offset);
}

void SchedulerConfigBase::write_base(io::Json& out) const {
  out["num_train_timesteps"] = num_train_timesteps;
  out["beta_start"] = beta_start;
  out["beta_end"] = beta_end;
  out["beta_schedule"] = beta_schedule;
  out["trained_betas"] = trained_betas ? io::Json(*trained_betas) : io::Json(nullptr);
  out["prediction_type"] = to_string(prediction_type);
  out["timestep_spacing"] = to_string(timestep_spacing);
  out["steps_offset"] = steps_offset;
}

// ---- Scheduler ----------------------------------------------------------------------------------

at::Tensor Scheduler::scale_model_input(const at::Tensor& sample, const at::Tensor& /*timestep*/) {
  return sample;
}

at::Tensor Scheduler::init_noise_sigma() const { return at::scalar_tensor(1.0, at::kFloat); }

void Scheduler::require_timesteps_set() const {
  if (!num_inference_steps_) {
    throw ValueError(
        "Number of inference steps is 'None', you need to run 'set_timesteps' after creating the scheduler");
  }
}

int64_t Scheduler::index_for_timestep(const at::Tensor& timestep, const at::Tensor& schedule,
                                      bool fallback_to_last) const {
  const at::Tensor candidates = at::eq(schedule.cpu(), timestep.cpu()).nonzero();
  const int64_t count = candidates.size(0);
  if (count == 0) {
    if (fallback_to_last) return timesteps_.size(0) - 1;
    throw ValueError("timestep " + std::to_string(timestep.item<double>()) +
                     " is not one of the scheduler's timesteps; pass one of `scheduler.timesteps`");
  }
  return candidates[count > 1 ? 1 : 0][0].item<int64_t>();
}

void Scheduler::init_step_index(const at::Tensor& timestep, bool fallback_to_last) {
  step_index_ = begin_index_ ? *begin_index_ : index_for_timestep(timestep, timesteps_, fallback_to_last);
}

at::Tensor Scheduler::add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                                const at::Tensor& timesteps) {
  // Ref: diffusers DDPMScheduler.add_noise.
  const at::Tensor ac = alphas_cumprod_.to(original_samples.device()).to(original_samples.scalar_type());
  const at::Tensor t = timesteps.to(original_samples.device()).to(at::kLong);
  at::Tensor sqrt_alpha_prod = at::pow(ac.index({t}), 0.5).flatten();
  while (sqrt_alpha_prod.dim() < original_samples.dim()) sqrt_alpha_prod = sqrt_alpha_prod.unsqueeze(-1);
  at::Tensor sqrt_one_minus_alpha_prod = at::pow(1 - ac.index({t}), 0.5).flatten();
  while (sqrt_one_minus_alpha_prod.dim() < original_samples.dim()) {
    sqrt_one_minus_alpha_prod = sqrt_one_minus_alpha_prod.unsqueeze(-1);
  }
  return sqrt_alpha_prod * original_samples + sqrt_one_minus_alpha_prod * noise;
}

at::Tensor Scheduler::sigmas_for_add_noise(const at::Tensor& original_samples, const at::Tensor& timesteps,
                                           bool fallback_to_last) const {
  // Ref: diffusers EulerDiscreteScheduler.add_noise: before the first step (img2img's noising)
  // the begin index decides; without one, each timestep is looked up.
  const at::Tensor sigmas = sigmas_.to(original_samples.device()).to(original_samples.scalar_type());
  const at::Tensor flat = timesteps.reshape({-1});
  std::vector<int64_t> indices;
  for (int64_t i = 0; i < flat.size(0); ++i) {
    if (!begin_index_) {
      indices.push_back(index_for_timestep(flat[i], timesteps_, fallback_to_last));
    } else {
      indices.push_back(step_index_ ? *step_index_ : *begin_index_);
    }
  }
  at::Tensor sigma = sigmas.index({to_tensor(indices).to(sigmas.device())}).flatten();
  while (sigma.dim() < original_samples.dim()) sigma = sigma.unsqueeze(-1);
  return sigma;
}

// ---- schedule math ------------------------------------------------------------------------------

at::Tensor betas_for_alpha_bar(int64_t num_diffusion_timesteps, double max_beta) {
  auto alpha_bar = [](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2);
    return std::pow(c, 2);
  };
  std::vector<double> betas;
  betas.reserve(num_diffusion_timesteps);
  for (int64_t i = 0; i < num_diffusion_timesteps; ++i) {
    const double t1 = static_cast<double>(i) / static_cast<double>(num_diffusion_timesteps);
    const double t2 = static_cast<double>(i + 1) / static_cast<double>(num_diffusion_timesteps);
    betas.push_back(std::min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta));
  }
  return to_tensor(betas, at::kFloat);
}

at::Tensor rescale_zero_terminal_snr(const at::Tensor& betas) {
  const at::Tensor alphas = 1.0 - betas;
  const at::Tensor alphas_cumprod = at::cumprod(alphas, 0);
  at::Tensor alphas_bar_sqrt = alphas_cumprod.sqrt();
  const at::Tensor sqrt_0 = alphas_bar_sqrt[0].clone();
  const at::Tensor sqrt_T = alphas_bar_sqrt[-1].clone();
  alphas_bar_sqrt -= sqrt_T;
  alphas_bar_sqrt *= sqrt_0 / (sqrt_0 - sqrt_T);
  const at::Tensor alphas_bar = at::pow(alphas_bar_sqrt, 2);
  const int64_t n = alphas_bar.size(0);
  const at::Tensor ratios = alphas_bar.slice(0, 1, n) / alphas_bar.slice(0, 0, n - 1);
  return 1 - at::cat({alphas_bar.slice(0, 0, 1), ratios});
}

at::Tensor make_betas(const SchedulerConfigBase& c, const std::string& origin) {
  if (c.trained_betas) return to_tensor(*c.trained_betas, at::kFloat);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  if (c.beta_schedule == "linear") return at::linspace(c.beta_start, c.beta_end, c.num_train_timesteps, f32);
  if (c.beta_schedule == "scaled_linear") {
    return at::pow(at::linspace(std::pow(c.beta_start, 0.5), std::pow(c.beta_end, 0.5), c.num_train_timesteps, f32), 2);
  }
  if (c.beta_schedule == "squaredcos_cap_v2") return betas_for_alpha_bar(c.num_train_timesteps);
  throw ValueError("unsupported value \"" + c.beta_schedule + "\" for key 'beta_schedule' in " + origin);
}

std::vector<double> np_linspace(double start, double stop, int64_t num) {
  // Ref: numpy linspace: y = arange(num) * step + start, the last value set to stop exactly.
  std::vector<double> y(std::max<int64_t>(num, 0));
  if (num <= 0) return y;
  const int64_t div = num - 1;
  const double delta = stop - start;
  const double step = div > 0 ? delta / static_cast<double>(div) : 0.0;
  for (int64_t i = 0; i < num; ++i) {
    if (div > 0 && step == 0) {
      y[i] = static_cast<double>(i) / static_cast<double>(div) * delta + start;
    } else if (div > 0) {
      y[i] = static_cast<double>(i) * step + start;
    } else {
      y[i] = static_cast<double>(i) * delta + start;
    }
  }
  if (num > 1) y[num - 1] = stop;
  return y;
}

std::vector<double> np_arange(double start, double stop, double step) {
  // Ref: numpy arange: length ceil((stop - start) / step); the fill uses the delta between the
  // first two values, start + i * ((start + step) - start).
  const double len_f = std::ceil((stop - start) / step);
  const int64_t length = len_f > 0 ? static_cast<int64_t>(len_f) : 0;
  std::vector<double> y(length);
  if (length == 0) return y;
  y[0] = start;
  if (length == 1) return y;
  y[1] = start + step;
  const double delta = y[1] - y[0];
  for (int64_t i = 2; i < length; ++i) y[i] = start + static_cast<double>(i) * delta;
  return y;
}

double np_round(double v) { return std::nearbyint(v); }

std::vector<double> np_interp(const std::vector<double>& x, const std::vector<double>& fp) {
  // Ref: numpy arr_interp with xp = 0..n-1 (binary search reduces to floor).
  const int64_t n = static_cast<int64_t>(fp.size());
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double xv = x[i];
    if (std::isnan(xv)) {
      out[i] = xv;
    } else if (xv <= 0) {
      out[i] = fp[0];
    } else if (xv >= static_cast<double>(n - 1)) {
      out[i] = fp[n - 1];
    } else {
      const int64_t j = static_cast<int64_t>(std::floor(xv));
      if (static_cast<double>(j) == xv) {
        out[i] = fp[j];
      } else {
        const double slope = (fp[j + 1] - fp[j]) / static_cast<double>((j + 1) - j);
        out[i] = slope * (xv - static_cast<double>(j)) + fp[j];
        if (std::isnan(out[i])) {
          out[i] = slope * (xv - static_cast<double>(j + 1)) + fp[j + 1];
          if (std::isnan(out[i]) && fp[j] == fp[j + 1]) out[i] = fp[j];
        }
      }
    }
  }
  return out;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  // Ref: diffusers _sigma_to_t. `low - high` is a float32 difference in numpy (both are float32
  // scalars); everything else is float64.
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const int64_t n = static_cast<int64_t>(log_sigmas.size());
  int64_t low_idx = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (log_sigma - static_cast<double>(log_sigmas[i]) >= 0) low_idx = i;
  }
  low_idx = std::min(low_idx, n - 2);
  const int64_t high_idx = low_idx + 1;
  const float low = log_sigmas[low_idx];
  const float high = log_sigmas[high_idx];
  const float low_minus_high = low - high;
  double w = (static_cast<double>(low) - log_sigma) / static_cast<double>(low_minus_high);
  w = std::clamp(w, 0.0, 1.0);
  return (1 - w) * static_cast<double>(low_idx) + w * static_cast<double>(high_idx);
}

std::vector<double> convert_to_karras(double sigma_min, double sigma_max, int64_t num_inference_steps) {
  const double rho = 7.0;  // the value used in the paper
  const std::vector<double> ramp = np_linspace(0, 1, num_inference_steps);
  const double min_inv_rho = std::pow(sigma_min, 1 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1 / rho);
  std::vector<double> sigmas;
  for (double r : ramp) sigmas.push_back(std::pow(max_inv_rho + r * (min_inv_rho - max_inv_rho), rho));
  return sigmas;
}

std::vector<double> convert_to_exponential(double sigma_min, double sigma_max, int64_t num_inference_steps) {
  std::vector<double> sigmas = np_linspace(std::log(sigma_max), std::log(sigma_min), num_inference_steps);
  for (double& s : sigmas) s = std::exp(s);
  return sigmas;
}

at::Tensor threshold_sample(const at::Tensor& sample_in, double ratio, double sample_max_value) {
  const at::ScalarType dtype = sample_in.scalar_type();
  at::Tensor sample = sample_in;
  // Upcast for the quantile, and clamp is not implemented for CPU half.
  if (dtype != at::kFloat && dtype != at::kDouble) sample = sample.to(at::kFloat);
  const std::vector<int64_t> shape = sample.sizes().vec();
  sample = sample.reshape({shape[0], sample.numel() / shape[0]});
  const at::Tensor abs_sample = sample.abs();
  at::Tensor s = at::quantile(abs_sample, ratio, 1);
  s = at::clamp(s, 1, sample_max_value);  // clamped to min=1: plain clipping to [-1, 1]
  s = s.unsqueeze(1);
  sample = at::clamp(sample, -s, s) / s;
  return sample.reshape(shape).to(dtype);
}

std::vector<float> train_sigmas(const at::Tensor& alphas_cumprod) {
  const at::Tensor s = at::pow((1 - alphas_cumprod) / alphas_cumprod, 0.5).contiguous();
  return std::vector<float>(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
}

std::vector<float> log_of(const std::vector<float>& values) {
  std::vector<float> out;
  out.reserve(values.size());
  for (float v : values) out.push_back(std::log(v));
  return out;
}

void check_timesteps_index_alphas(const std::vector<int64_t>& timesteps, const SchedulerConfigBase& config,
                                  int64_t num_inference_steps, const char* scheduler) {
  const int64_t T = config.num_train_timesteps;
  for (const int64_t t : timesteps) {
    if (t < 0 || t >= T) {
      throw ValueError(std::string(scheduler) + ": steps_offset=" + std::to_string(config.steps_offset) +
                       " with num_inference_steps=" + std::to_string(num_inference_steps) + " puts timestep " +
                       std::to_string(t) + " outside [0, " + std::to_string(T) +
                       "), the range of num_train_timesteps in the scheduler config");
    }
  }
}

std::vector<double> spaced_timesteps_descending(TimestepSpacing spacing, int64_t T, int64_t n,
                                                int64_t steps_offset) {
  std::vector<double> ts;
  if (spacing == TimestepSpacing::kLinspace) {
    ts = np_linspace(0, static_cast<double>(T - 1), n);
    std::reverse(ts.begin(), ts.end());
  } else if (spacing == TimestepSpacing::kLeading) {
    const int64_t ratio = T / n;
    for (int64_t i = n - 1; i >= 0; --i) ts.push_back(static_cast<double>(i * ratio + steps_offset));
  } else {
    const double ratio = static_cast<double>(T) / static_cast<double>(n);
    for (double v : np_arange(static_cast<double>(T), 0, -ratio)) ts.push_back(np_round(v) - 1);
  }
  return ts;
}

at::Tensor to_tensor(const std::vector<double>& values, at::ScalarType dtype) {
  at::Tensor t = at::empty({static_cast<int64_t>(values.size())}, at::kDouble);
  std::copy(values.begin(), values.end(), t.data_ptr<double>());
  return t.to(dtype);
}

at::Tensor to_tensor(const std::vector<int64_t>& values) {
  at::Tensor t = at::empty({static_cast<int64_t>(values.size())}, at::kLong);
  std::copy(values.begin(), values.end(), t.data_ptr<int64_t>());
  return t;
}

// ---- factory ------------------------------------------------------------------------------------

std::vector<std::string> scheduler_class_names() {
  return {"DDIMScheduler", "DDPMScheduler", "DPMSolverMultistepScheduler", "EulerAncestralDiscreteScheduler",
          "EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler", "PNDMScheduler",
          "UnCLIPScheduler", "UniPCMultistepScheduler"};
}

std::shared_ptr<Scheduler> make_scheduler(const std::string& class_name, const io::JsonConfig& config) {
  if (class_name == "PNDMScheduler") return std::make_shared<PNDMScheduler>(PNDMSchedulerConfig::from_json(config));
  if (class_name == "DDIMScheduler") return std::make_shared<DDIMScheduler>(DDIMSchedulerConfig::from_json(config));
  if (class_name == "EulerDiscreteScheduler") {
    return std::make_shared<EulerDiscreteScheduler>(EulerDiscreteSchedulerConfig::from_json(config));
  }
  if (class_name == "EulerAncestralDiscreteScheduler") {
    return std::make_shared<EulerAncestralDiscreteScheduler>(EulerAncestralDiscreteSchedulerConfig::from_json(config));
  }
  if (class_name == "DPMSolverMultistepScheduler") {
    return std::make_shared<DPMSolverMultistepScheduler>(DPMSolverMultistepSchedulerConfig::from_json(config));
  }
  if (class_name == "DDPMScheduler") return std::make_shared<DDPMScheduler>(DDPMSchedulerConfig::from_json(config));
  if (class_name == "UnCLIPScheduler") {
    return std::make_shared<UnCLIPScheduler>(UnCLIPSchedulerConfig::from_json(config));
  }
  if (class_name == "LMSDiscreteScheduler") {
    return std::make_shared<LMSDiscreteScheduler>(LMSDiscreteSchedulerConfig::from_json(config));
  }
  if (class_name == "HeunDiscreteScheduler") {
    return std::make_shared<HeunDiscreteScheduler>(HeunDiscreteSchedulerConfig::from_json(config));
  }
  if (class_name == "UniPCMultistepScheduler") {
    return std::make_shared<UniPCMultistepScheduler>(UniPCMultistepSchedulerConfig::from_json(config));
  }
  std::vector<std::string> known = scheduler_class_names();
  throw ValueError("unknown scheduler class \"" + class_name + "\" in " + config.origin() +
                   " (native_diffusers implements " + join(known) + ")");
}

std::shared_ptr<Scheduler> load_scheduler(const std::string& config_path) {
  const io::JsonConfig config = io::JsonConfig::from_file(config_path);
  return make_scheduler(config.get_string("_class_name"), config);
}

}  // namespace nd
