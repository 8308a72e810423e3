#include "schedulers/scheduling_lms_discrete.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/errors.h"

namespace nd {
namespace {

// QUADPACK's 21-point Gauss-Kronrod rule (dqk21): abscissae of the Kronrod rule (odd entries are
// the 10-point Gauss nodes), its weights, and the Gauss weights.
constexpr double kXgk[11] = {0.995657163025808080735527280689003, 0.973906528517171720077964012084452,
                             0.930157491355708226001207180059508, 0.865063366688984510732096688423493,
                             0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
                             0.562757134668604683339000099272694, 0.433395394129247190799265943165784,
                             0.294392862701460198131126603103866, 0.148874338981631210884826001129720,
                             0.000000000000000000000000000000000};
constexpr double kWgk[11] = {0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
                             0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
                             0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
                             0.123491976262065851077958109831074, 0.134709217311473325928054001771707,
                             0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
                             0.149445554002916905664936468389821};

// Ref: scipy.integrate.quad (QUADPACK dqagse) on a polynomial of degree < 4: the first 21-point
// Gauss-Kronrod estimate is exact up to rounding, its error estimate is far below epsrel = 1e-4,
// so quad returns it without subdividing. This is that estimate, summed in dqk21's order.
template <typename F>
double gauss_kronrod_21(const F& f, double a, double b) {
  // quad returns 0 over an empty interval without evaluating f. Sigmas clamped to the trained range
  // (timesteps a config's steps_offset pushes past it) are equal, and there f divides 0 by 0.
  if (a == b) return 0.0;
  const double centr = 0.5 * (a + b);
  const double hlgth = 0.5 * (b - a);
  double resk = kWgk[10] * f(centr);
  for (int j = 1; j <= 5; ++j) {  // the Gauss nodes
    const int jtw = 2 * j - 1;
    const double absc = hlgth * kXgk[jtw];
    resk += kWgk[jtw] * (f(centr - absc) + f(centr + absc));
  }
  for (int j = 1; j <= 5; ++j) {  // the Kronrod-only nodes
    const int jtwm1 = 2 * j - 2;
    const double absc = hlgth * kXgk[jtwm1];
    resk += kWgk[jtwm1] * (f(centr - absc) + f(centr + absc));
  }
  return resk * hlgth;
}

}  // namespace

LMSDiscreteSchedulerConfig LMSDiscreteSchedulerConfig::from_json(const io::JsonConfig& json) {
  LMSDiscreteSchedulerConfig c;
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
  return c;
}

io::Json LMSDiscreteSchedulerConfig::to_json() const {
  io::Json out = io::Json::object();
  write_base(out);
  out["use_karras_sigmas"] = use_karras_sigmas;
  out["use_exponential_sigmas"] = use_exponential_sigmas;
  out["use_beta_sigmas"] = use_beta_sigmas;
  return out;
}

LMSDiscreteScheduler::LMSDiscreteScheduler(LMSDiscreteSchedulerConfig config) : config_(std::move(config)) {
  betas_ = make_betas(config_, "LMSDiscreteScheduler config");
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = at::cumprod(alphas_, 0);
  // Ref: diffusers __init__ runs set_timesteps(num_train_timesteps).
  set_timesteps(config_.num_train_timesteps, std::nullopt, {}, {});
}

at::Tensor LMSDiscreteScheduler::init_noise_sigma() const {
  const at::Tensor max_sigma = sigmas_.max();
  if (config_.timestep_spacing != TimestepSpacing::kLeading) return max_sigma;
  return at::pow(at::pow(max_sigma, 2) + 1, 0.5);
}

void LMSDiscreteScheduler::set_timesteps(std::optional<int64_t> num_inference_steps,
                                         std::optional<c10::Device> device, const std::vector<double>& timesteps,
                                         const std::vector<double>& sigmas) {
  // Ref: diffusers LMSDiscreteScheduler.set_timesteps.
  if (!timesteps.empty() || !sigmas.empty()) {
    throw ValueError(
        "The current scheduler class LMSDiscreteScheduler's `set_timesteps` does not support custom timestep or "
        "sigma schedules. Please check whether you are using the correct scheduler.");
  }
  if (!num_inference_steps || *num_inference_steps < 1) {
    throw ValueError("`num_inference_steps` must be a positive integer for LMSDiscreteScheduler.set_timesteps");
  }
  const int64_t n = *num_inference_steps;
  num_inference_steps_ = n;
  const std::vector<float> train = train_sigmas(alphas_cumprod_);
  const std::vector<float> log_sigmas = log_of(train);
  // numpy holds the timesteps in float32 before interpolating.
  std::vector<double> ts;
  for (double t : spaced_timesteps_descending(config_.timestep_spacing, config_.num_train_timesteps, n, 0)) {
    float tf = static_cast<float>(t);
    if (config_.timestep_spacing == TimestepSpacing::kLeading) tf += static_cast<float>(config_.steps_offset);
    ts.push_back(tf);
  }
  std::vector<double> s = np_interp(ts, std::vector<double>(train.begin(), train.end()));
  if (config_.use_karras_sigmas || config_.use_exponential_sigmas) {
    const double smin = s.back(), smax = s.front();
    s = config_.use_karras_sigmas ? convert_to_karras(smin, smax, n) : convert_to_exponential(smin, smax, n);
    ts.clear();
    for (double v : s) ts.push_back(sigma_to_t(v, log_sigmas));
  }
  s.push_back(0.0);
  sigmas_ = to_tensor(s, at::kFloat);
  sigma_values_.assign(sigmas_.data_ptr<float>(), sigmas_.data_ptr<float>() + sigmas_.numel());
  timesteps_ = to_tensor(ts, at::kFloat);
  if (device) timesteps_ = timesteps_.to(*device);
  step_index_.reset();
  begin_index_.reset();
  derivatives_.clear();
}

at::Tensor LMSDiscreteScheduler::scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) {
  if (!step_index_) init_step_index(timestep);
  const at::Tensor sigma = sigmas_[*step_index_];
  return sample / at::pow(at::pow(sigma, 2) + 1, 0.5);
}

double LMSDiscreteScheduler::lms_coefficient(int64_t order, int64_t t, int64_t current_order) const {
  const std::vector<float>& s = sigma_values_;
  // diffusers evaluates the basis polynomial on 0-d float32 tensors: tau is rounded to float32
  // and every difference, quotient and product is a float32 op.
  auto lms_derivative = [&](double tau) {
    float prod = 1.0f;
    for (int64_t k = 0; k < order; ++k) {
      if (current_order == k) continue;
      const float num = static_cast<float>(tau) - s[t - k];
      const float den = s[t - current_order] - s[t - k];
      prod = prod * (num / den);
    }
    return static_cast<double>(prod);
  };
  return gauss_kronrod_21(lms_derivative, static_cast<double>(s[t]), static_cast<double>(s[t + 1]));
}

SchedulerOutput LMSDiscreteScheduler::step(const at::Tensor& model_output, const at::Tensor& timestep,
                                           const at::Tensor& sample, const StepOptions& o) {
  // Ref: diffusers scheduling_lms_discrete.py, step.
  if (o.order < 1) throw ValueError("LMSDiscreteScheduler.step: `order` must be at least 1");
  if (!step_index_) init_step_index(timestep);
  const int64_t i = *step_index_;
  const at::Tensor sigma = sigmas_[i];
  // 1. compute predicted original sample (x_0) from sigma-scaled predicted noise
  at::Tensor pred_original_sample;
  switch (config_.prediction_type) {
    case PredictionType::kEpsilon: pred_original_sample = sample - sigma * model_output; break;
    case PredictionType::kVPrediction:
      pred_original_sample =
          model_output * (-sigma / at::pow(at::pow(sigma, 2) + 1, 0.5)) + (sample / (at::pow(sigma, 2) + 1));
      break;
    case PredictionType::kSample: pred_original_sample = model_output; break;
  }
  // 2. convert to an ODE derivative
  derivatives_.push_back((sample - pred_original_sample) / sigma);
  if (static_cast<int64_t>(derivatives_.size()) > o.order) derivatives_.pop_front();
  // 3. linear multistep coefficients. After an img2img cut the step index may exceed the number
  // of stored derivatives; diffusers' zip then pairs only the first coefficients with them, and
  // so does this loop.
  const int64_t order = std::min(i + 1, o.order);
  const int64_t used = std::min<int64_t>(order, static_cast<int64_t>(derivatives_.size()));
  at::Tensor total;
  for (int64_t k = 0; k < used; ++k) {
    const at::Tensor term = lms_coefficient(order, i, k) * derivatives_[derivatives_.size() - 1 - k];
    total = k == 0 ? term : total + term;
  }
  // 4. compute previous sample based on the derivatives path
  const at::Tensor prev_sample = sample + total;
  *step_index_ += 1;
  return {prev_sample, pred_original_sample};
}

at::Tensor LMSDiscreteScheduler::add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                                           const at::Tensor& timesteps) {
  const at::Tensor sigma = sigmas_for_add_noise(original_samples, timesteps);
  return original_samples + noise * sigma;
}

}  // namespace nd
