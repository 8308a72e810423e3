#include "schedulers/scheduling_pndm.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/errors.h"

namespace nd {

PNDMSchedulerConfig PNDMSchedulerConfig::from_json(const io::JsonConfig& json) {
  PNDMSchedulerConfig c;
  c.read_base(json, {PredictionType::kEpsilon, PredictionType::kVPrediction});
  c.skip_prk_steps = json.get_bool("skip_prk_steps", c.skip_prk_steps);
  c.set_alpha_to_one = json.get_bool("set_alpha_to_one", c.set_alpha_to_one);
  return c;
}

io::Json PNDMSchedulerConfig::to_json() const {
  io::Json out = io::Json::object();
  write_base(out);
  out["skip_prk_steps"] = skip_prk_steps;
  out["set_alpha_to_one"] = set_alpha_to_one;
  return out;
}

PNDMScheduler::PNDMScheduler(PNDMSchedulerConfig config) : config_(std::move(config)) {
  betas_ = make_betas(config_, "PNDMScheduler config");
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = at::cumprod(alphas_, 0);
  final_alpha_cumprod_ = config_.set_alpha_to_one ? at::scalar_tensor(1.0, at::kFloat) : alphas_cumprod_[0];
  timesteps_ = at::arange(config_.num_train_timesteps - 1, -1, -1, at::kLong);
}

void PNDMScheduler::set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                                  const std::vector<double>& timesteps, const std::vector<double>& sigmas) {
  if (!timesteps.empty() || !sigmas.empty()) {
    throw ValueError(
        "The current scheduler class PNDMScheduler's `set_timesteps` does not support custom timestep or sigma "
        "schedules. Please check whether you are using the correct scheduler.");
  }
  if (!num_inference_steps || *num_inference_steps < 1) {
    throw ValueError("`num_inference_steps` must be a positive integer for PNDMScheduler.set_timesteps");
  }
  const int64_t n = *num_inference_steps;
  const int64_t T = config_.num_train_timesteps;
  num_inference_steps_ = n;
  // Ref: diffusers PNDMScheduler.set_timesteps (`_timesteps`, ascending).
  std::vector<int64_t> ts;
  if (config_.timestep_spacing == TimestepSpacing::kLinspace) {
    for (double v : np_linspace(0, static_cast<double>(T - 1), n)) ts.push_back(static_cast<int64_t>(np_round(v)));
  } else if (config_.timestep_spacing == TimestepSpacing::kLeading) {
    const int64_t ratio = T / n;
    for (int64_t i = 0; i < n; ++i) ts.push_back(i * ratio + config_.steps_offset);
  } else {
    const double ratio = static_cast<double>(T) / static_cast<double>(n);
    for (double v : np_arange(static_cast<double>(T), 0, -ratio)) ts.push_back(static_cast<int64_t>(np_round(v)) - 1);
    std::reverse(ts.begin(), ts.end());
  }
  check_timesteps_index_alphas(ts, config_, n, "PNDMScheduler");
  const int64_t len = static_cast<int64_t>(ts.size());
  prk_timesteps_.clear();
  plms_timesteps_.clear();
  if (config_.skip_prk_steps) {
    // concat(_timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:])[::-1]: the second-to-last
    // timestep repeats, which is PLMS's warm-up step.
    std::vector<int64_t> plms(ts.begin(), ts.end() - 1);
    if (len >= 2) plms.push_back(ts[len - 2]);
    plms.push_back(ts[len - 1]);
    plms_timesteps_.assign(plms.rbegin(), plms.rend());
  } else {
    if (len < kPndmOrder) {
      // numpy fails to broadcast here in diffusers; say why instead.
      throw ValueError("PNDMScheduler without skip_prk_steps needs num_inference_steps >= 4, got " +
                       std::to_string(n));
    }
    // prk = repeat(_timesteps[-4:], 2) + tile([0, T // n // 2], 4); then prk[:-1].repeat(2)[1:-1][::-1].
    std::vector<int64_t> prk;
    for (int64_t i = len - kPndmOrder; i < len; ++i) {
      prk.push_back(ts[i]);
      prk.push_back(ts[i] + T / n / 2);
    }
    prk.pop_back();
    std::vector<int64_t> doubled;
    for (int64_t v : prk) {
      doubled.push_back(v);
      doubled.push_back(v);
    }
    std::vector<int64_t> trimmed(doubled.begin() + 1, doubled.end() - 1);
    prk_timesteps_.assign(trimmed.rbegin(), trimmed.rend());
    std::vector<int64_t> plms(ts.begin(), ts.end() - 3);
    plms_timesteps_.assign(plms.rbegin(), plms.rend());
  }
  std::vector<int64_t> all = prk_timesteps_;
  all.insert(all.end(), plms_timesteps_.begin(), plms_timesteps_.end());
  timesteps_ = to_tensor(all);
  if (device) timesteps_ = timesteps_.to(*device);
  ets_.clear();
  counter_ = 0;
  cur_model_output_ = at::Tensor();
}

SchedulerOutput PNDMScheduler::step(const at::Tensor& model_output, const at::Tensor& timestep,
                                    const at::Tensor& sample, const StepOptions& /*options*/) {
  const int64_t t = timestep.item<int64_t>();
  if (counter_ < static_cast<int64_t>(prk_timesteps_.size()) && !config_.skip_prk_steps) {
    return step_prk(model_output, t, sample);
  }
  return step_plms(model_output, t, sample);
}

SchedulerOutput PNDMScheduler::step_prk(const at::Tensor& model_output_in, int64_t timestep, const at::Tensor& sample) {
  // Ref: diffusers scheduling_pndm.py, step_prk: four model evaluations per Runge-Kutta step.
  require_timesteps_set();
  const int64_t T = config_.num_train_timesteps;
  const int64_t diff_to_prev = counter_ % 2 ? 0 : T / *num_inference_steps_ / 2;
  const int64_t prev_timestep = timestep - diff_to_prev;
  timestep = prk_timesteps_[counter_ / 4 * 4];
  at::Tensor model_output = model_output_in;
  if (counter_ % 4 == 0) {
    cur_model_output_ = model_output * (1.0 / 6);
    ets_.push_back(model_output);
    cur_sample_ = sample;
  } else if ((counter_ - 1) % 4 == 0 || (counter_ - 2) % 4 == 0) {
    cur_model_output_ = cur_model_output_ + model_output * (1.0 / 3);
  } else {
    model_output = cur_model_output_ + model_output * (1.0 / 6);
    cur_model_output_ = at::Tensor();
  }
  const at::Tensor& cur_sample = cur_sample_.defined() ? cur_sample_ : sample;
  SchedulerOutput out;
  out.prev_sample = get_prev_sample(cur_sample, timestep, prev_timestep, model_output);
  ++counter_;
  return out;
}

SchedulerOutput PNDMScheduler::step_plms(const at::Tensor& model_output_in, int64_t timestep,
                                         const at::Tensor& sample_in) {
  // Ref: diffusers scheduling_pndm.py, step_plms: Adams-Bashforth over the last four outputs.
  require_timesteps_set();
  if (!config_.skip_prk_steps && ets_.size() < 3) {
    throw ValueError(
        "PNDMScheduler can only be run AFTER scheduler has been run in 'prk' mode for at least 12 iterations");
  }
  const int64_t stride = config_.num_train_timesteps / *num_inference_steps_;
  int64_t prev_timestep = timestep - stride;
  if (counter_ != 1) {
    if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
    ets_.push_back(model_output_in);
  } else {
    // The repeated first timestep: step from t + stride to t again with the averaged output.
    prev_timestep = timestep;
    timestep = timestep + stride;
  }
  at::Tensor model_output = model_output_in;
  at::Tensor sample = sample_in;
  const size_t n = ets_.size();
  if (n == 1 && counter_ == 0) {
    cur_sample_ = sample;
  } else if (n == 1 && counter_ == 1) {
    model_output = (model_output + ets_[n - 1]) / 2;
    sample = cur_sample_;
    cur_sample_ = at::Tensor();
  } else if (n == 2) {
    model_output = (3 * ets_[n - 1] - ets_[n - 2]) / 2;
  } else if (n == 3) {
    model_output = (23 * ets_[n - 1] - 16 * ets_[n - 2] + 5 * ets_[n - 3]) / 12;
  } else {
    model_output = (1.0 / 24) * (55 * ets_[n - 1] - 59 * ets_[n - 2] + 37 * ets_[n - 3] - 9 * ets_[n - 4]);
  }
  SchedulerOutput out;
  out.prev_sample = get_prev_sample(sample, timestep, prev_timestep, model_output);
  ++counter_;
  return out;
}

at::Tensor PNDMScheduler::get_prev_sample(const at::Tensor& sample, int64_t timestep, int64_t prev_timestep,
                                          at::Tensor model_output) const {
  const at::Tensor alpha_prod_t = alphas_cumprod_[timestep];
  const at::Tensor alpha_prod_t_prev = prev_timestep >= 0 ? alphas_cumprod_[prev_timestep] : final_alpha_cumprod_;
  const at::Tensor beta_prod_t = 1 - alpha_prod_t;
  const at::Tensor beta_prod_t_prev = 1 - alpha_prod_t_prev;
  if (config_.prediction_type == PredictionType::kVPrediction) {
    model_output = at::pow(alpha_prod_t, 0.5) * model_output + at::pow(beta_prod_t, 0.5) * sample;
  }
  const at::Tensor sample_coeff = at::pow(alpha_prod_t_prev / alpha_prod_t, 0.5);
  const at::Tensor denom = alpha_prod_t * at::pow(beta_prod_t_prev, 0.5) +
                           at::pow(alpha_prod_t * beta_prod_t * alpha_prod_t_prev, 0.5);
  return sample_coeff * sample - (alpha_prod_t_prev - alpha_prod_t) * model_output / denom;
}

}  // namespace nd
