// Mirrors diffusers SchedulerMixin (schedulers/scheduling_utils.py): the surface every scheduler
// shares, the beta schedules and numpy-exact spacing helpers they are built from, and the factory
// that picks a class by scheduler_config.json's `_class_name`.
//
// Parity rule for every file in this folder: scalar coefficients are 0-d float32 tensors computed
// with the same ATen ops in the same order as diffusers, and schedules are computed in double
// exactly as numpy does, so results match diffusers bit for bit (or to the last float32 ulp).
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/json_config.h"

namespace nd {

enum class PredictionType { kEpsilon, kSample, kVPrediction };
enum class TimestepSpacing { kLinspace, kLeading, kTrailing };

std::string to_string(PredictionType p);
std::string to_string(TimestepSpacing s);

// The keys every diffusers scheduler takes, with diffusers' most common defaults; a class whose
// constructor defaults differ (timestep_spacing "leading" for PNDM and DDIM) sets them in its
// config's constructor. Other keys live in each class's config.
struct SchedulerConfigBase {
  // A bound of ours on num_train_timesteps (see read_base): 1000x what any released schedule uses.
  static constexpr int64_t kMaxTrainTimesteps = 1'000'000;

  int64_t num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";  // linear | scaled_linear | squaredcos_cap_v2
  std::optional<std::vector<double>> trained_betas;  // overrides beta_schedule when set
  PredictionType prediction_type = PredictionType::kEpsilon;
  TimestepSpacing timestep_spacing = TimestepSpacing::kLinspace;
  int64_t steps_offset = 0;

  // Reads the shared keys. `allowed_predictions` lists what this class's step implements;
  // anything else throws naming the key and file.
  void read_base(const io::JsonConfig& json, const std::vector<PredictionType>& allowed_predictions);
  void write_base(io::Json& out) const;
};

// What `step` needs beyond the model output; each scheduler reads the fields diffusers' `step`
// takes for that class and ignores the rest.
struct StepOptions {
  double eta = 0.0;                       // DDIM
  bool use_clipped_model_output = false;  // DDIM
  std::vector<at::Generator> generators;  // stochastic schedulers: none, one, or one per batch item
  at::Tensor variance_noise;              // DDIM, DPM-Solver SDE: used instead of drawing noise
  double s_churn = 0.0;                   // Euler
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0;
  int64_t order = 4;  // LMS: the linear multistep order (diffusers' `order` argument of step)
  std::optional<int64_t> prev_timestep;  // UnCLIP: the timestep this step goes to (none: t - 1)
};

struct SchedulerOutput {
  at::Tensor prev_sample;
  at::Tensor pred_original_sample;  // undefined for schedulers whose diffusers output lacks it
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  virtual std::string class_name() const = 0;
  // The resolved config with diffusers' keys (every constructor argument), as diffusers writes it.
  virtual io::Json config_json() const = 0;
  // diffusers' `order` attribute: model evaluations per step (2 for Heun).
  virtual int64_t order() const { return 1; }

  // Ref: diffusers <Scheduler>.set_timesteps. A non-empty `timesteps` or `sigmas` is a custom
  // schedule and takes precedence over `num_inference_steps` (for classes that accept one; others
  // throw). `device` places `timesteps()`; sigmas stay on the CPU as in diffusers.
  virtual void set_timesteps(std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
                             const std::vector<double>& timesteps, const std::vector<double>& sigmas) = 0;

  // Ref: diffusers <Scheduler>.scale_model_input. Identity unless the scheduler works in sigma space.
  virtual at::Tensor scale_model_input(const at::Tensor& sample, const at::Tensor& timestep);
  virtual SchedulerOutput step(const at::Tensor& model_output, const at::Tensor& timestep,
                               const at::Tensor& sample, const StepOptions& options) = 0;
  // Ref: diffusers <Scheduler>.add_noise (DDPM form: sqrt(a) x0 + sqrt(1 - a) noise).
  virtual at::Tensor add_noise(const at::Tensor& original_samples, const at::Tensor& noise,
                               const at::Tensor& timesteps);

  const at::Tensor& timesteps() const { return timesteps_; }
  // Undefined for schedulers without sigmas (PNDM, DDIM, DDPM).
  const at::Tensor& sigmas() const { return sigmas_; }
  // diffusers returns 1.0 for DDPM-style schedulers and a 0-d tensor for sigma-space ones.
  virtual at::Tensor init_noise_sigma() const;
  // 0 until set_timesteps; the length diffusers stores in `num_inference_steps`.
  int64_t num_inference_steps() const { return num_inference_steps_.value_or(0); }
  bool timesteps_set() const { return num_inference_steps_.has_value(); }

  // Ref: diffusers set_begin_index: img2img sets it to t_start * order so the first step does not
  // search the schedule. PNDM has no step index in diffusers; there it is accepted and ignored.
  virtual void set_begin_index(int64_t begin_index) { begin_index_ = begin_index; }
  std::optional<int64_t> begin_index() const { return begin_index_; }
  std::optional<int64_t> step_index() const { return step_index_; }

  const at::Tensor& betas() const { return betas_; }
  const at::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  // The config's num_train_timesteps (the length of the training schedule).
  int64_t num_train_timesteps() const { return alphas_cumprod_.defined() ? alphas_cumprod_.size(0) : 0; }

 protected:
  // Ref: diffusers index_for_timestep: the position of `timestep` in `schedule`, taking the
  // second match when there are several, so a schedule cut for img2img does not skip a sigma.
  // `fallback_to_last` (DPM-Solver, UniPC) returns the last index instead of throwing when absent.
  int64_t index_for_timestep(const at::Tensor& timestep, const at::Tensor& schedule,
                             bool fallback_to_last = false) const;
  // Ref: diffusers _init_step_index.
  void init_step_index(const at::Tensor& timestep, bool fallback_to_last = false);
  // Ref: diffusers add_noise of the sigma-space schedulers: the sigma at each sample's step index.
  at::Tensor sigmas_for_add_noise(const at::Tensor& original_samples, const at::Tensor& timesteps,
                                  bool fallback_to_last = false) const;
  void require_timesteps_set() const;

  at::Tensor betas_, alphas_, alphas_cumprod_;  // [num_train_timesteps] float32, CPU
  at::Tensor timesteps_;                        // on the set_timesteps device
  at::Tensor sigmas_;                           // CPU float32, or undefined
  std::optional<int64_t> num_inference_steps_;
  std::optional<int64_t> step_index_;
  std::optional<int64_t> begin_index_;
};

// ---- shared schedule math (the functions diffusers copies into every scheduler file) ----------

// Ref: diffusers betas_for_alpha_bar ("cosine" transform), computed in double then float32.
at::Tensor betas_for_alpha_bar(int64_t num_diffusion_timesteps, double max_beta = 0.999);
// Ref: diffusers rescale_zero_terminal_snr.
at::Tensor rescale_zero_terminal_snr(const at::Tensor& betas);
// Betas from the shared keys; an unknown beta_schedule throws naming the key and file.
at::Tensor make_betas(const SchedulerConfigBase& config, const std::string& origin);

// numpy-exact helpers (float64 as numpy computes them).
std::vector<double> np_linspace(double start, double stop, int64_t num);
std::vector<double> np_arange(double start, double stop, double step);
std::vector<double> np_interp(const std::vector<double>& x, const std::vector<double>& fp);  // xp = 0..n-1
double np_round(double v);  // half to even

// Ref: diffusers <Scheduler>._sigma_to_t: fractional timestep of `sigma` against float32
// log-sigmas, in double.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);
// Ref: diffusers _convert_to_karras (rho = 7) and _convert_to_exponential.
std::vector<double> convert_to_karras(double sigma_min, double sigma_max, int64_t num_inference_steps);
std::vector<double> convert_to_exponential(double sigma_min, double sigma_max, int64_t num_inference_steps);
// Ref: diffusers _threshold_sample (dynamic thresholding, Imagen).
at::Tensor threshold_sample(const at::Tensor& sample, double dynamic_thresholding_ratio, double sample_max_value);

// The training sigmas ((1 - a) / a) ** 0.5 as float32 values, and their float32 logs.
std::vector<float> train_sigmas(const at::Tensor& alphas_cumprod);
std::vector<float> log_of(const std::vector<float>& values);

// Timesteps (float64, not yet cast) for the three spacings as the Euler family computes them
// (descending): linspace over [0, T-1], leading (i * (T // n) reversed + offset), trailing.
std::vector<double> spaced_timesteps_descending(TimestepSpacing spacing, int64_t num_train_timesteps,
                                                int64_t num_inference_steps, int64_t steps_offset);

// For the schedulers that index alphas_cumprod by timestep (DDIM, DDPM, PNDM): every timestep must lie
// in [0, num_train_timesteps). A config's steps_offset can push leading-spaced timesteps out (SD's
// steps_offset=1 at num_inference_steps=1000 gives 1000); diffusers then fails in step() with an
// IndexError, so this fails in set_timesteps with a ValueError naming the keys instead.
void check_timesteps_index_alphas(const std::vector<int64_t>& timesteps, const SchedulerConfigBase& config,
                                  int64_t num_inference_steps, const char* scheduler);

at::Tensor to_tensor(const std::vector<double>& values, at::ScalarType dtype);
at::Tensor to_tensor(const std::vector<int64_t>& values);

// Reads an enum-like string key, throwing "unsupported value" naming the key and file.
PredictionType read_prediction_type(const io::JsonConfig& json, PredictionType fallback,
                                    const std::vector<PredictionType>& allowed);
void check_choice(const io::JsonConfig& json, const std::string& key, const std::string& value,
                  const std::vector<std::string>& allowed);

// ---- factory ------------------------------------------------------------------------------------

// The classes the factory knows, in diffusers' names.
std::vector<std::string> scheduler_class_names();
// Builds `class_name` from a config (keys of other classes are ignored, as diffusers' from_config
// does); an unknown class throws ValueError naming it.
std::shared_ptr<Scheduler> make_scheduler(const std::string& class_name, const io::JsonConfig& config);
// Reads scheduler_config.json and builds the class its `_class_name` names.
std::shared_ptr<Scheduler> load_scheduler(const std::string& config_path);

}  // namespace nd
