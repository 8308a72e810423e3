// The steps diffusers' pipelines share through "# Copied from" (retrieve_timesteps, get_timesteps,
// the VAE half of prepare_latents, classifier-free guidance and rescale_noise_cfg): written once
// here and called by every pipeline in the engine.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "models/autoencoders/autoencoder_kl.h"
#include "models/unets/unet_2d_condition.h"
#include "schedulers/scheduling_utils.h"
#include "tokenizers/clip_tokenizer.h"

namespace nd {

// The tensors diffusers exposes to callback_on_step_end, by diffusers' names
// (`_callback_tensor_inputs`). The callback returns the ones it replaces.
using StepTensors = std::map<std::string, at::Tensor>;
using StepCallback =
    std::function<StepTensors(int64_t step, const at::Tensor& timestep, const StepTensors& tensors)>;

// Calls the user's callback (if any) and writes back the tensors it returned; names the
// pipeline does not expose are ignored, as diffusers pops only its own.
void run_step_callback(const StepCallback& callback, int64_t step, const at::Tensor& timestep,
                       StepTensors& tensors);

// Token ids [B, max_length] as diffusers' encode_prompt asks for them: padded to max_length and
// truncated.
at::Tensor tokenize_padded(const CLIPTokenizer& tokenizer, const std::vector<std::string>& texts,
                           int64_t max_length);

// Ref: diffusers encode_prompt: each prompt's embeddings repeated num_images_per_prompt times,
// keeping a prompt's copies adjacent ([p0, p0, p1, p1]).
at::Tensor repeat_per_prompt(const at::Tensor& embeds, int64_t num_images_per_prompt);

// Ref: diffusers retrieve_timesteps: a custom schedule's length replaces num_inference_steps.
// Returns the number of inference steps the scheduler was set to.
int64_t retrieve_timesteps(Scheduler& scheduler, int64_t num_inference_steps, c10::Device device,
                           const std::vector<double>& timesteps, const std::vector<double>& sigmas);

struct TimestepWindow {
  at::Tensor timesteps;         // the part of the schedule the loop runs
  int64_t num_inference_steps;  // the progress bar's total
};

// Ref: diffusers StableDiffusionXLImg2ImgPipeline.get_timesteps. Without `denoising_start` it is
// StableDiffusionImg2ImgPipeline.get_timesteps (the strength cut); with it, the schedule starts at
// the first timestep below (1 - denoising_start) * num_train_timesteps. Sets the begin index.
TimestepWindow get_timesteps(Scheduler& scheduler, int64_t num_inference_steps, double strength,
                             std::optional<double> denoising_start);

// Ref: diffusers StableDiffusionXLImg2ImgPipeline.__call__ (denoising_end): keeps the timesteps
// at or above round(T - denoising_end * T).
TimestepWindow cut_at_denoising_end(const TimestepWindow& window, const Scheduler& scheduler,
                                    double denoising_end);

// The first half of diffusers' img2img prepare_latents: VAE-encoded, sampled and scaled latents
// of `image` ([B, 3, H, W] in [-1, 1]; latents with the VAE's latent_channels pass through),
// repeated to `batch_size` (an error if that is not a multiple). A list of generators gives one
// VAE encode per image, each drawing from its own generator, as diffusers does.
// `force_upcast` encodes a float16 VAE in float32 (diffusers' SDXL pipelines).
at::Tensor encode_image_latents(AutoencoderKL& vae, const at::Tensor& image, int64_t batch_size,
                                at::ScalarType dtype, c10::Device device,
                                const std::vector<at::Generator>& generators, bool force_upcast);

// Latents back to the VAE's space (inverse of the scaling above) and decoded; `force_upcast`
// decodes a float16 VAE in float32 as diffusers' SDXL pipelines do.
at::Tensor decode_latents(AutoencoderKL& vae, const at::Tensor& latents, bool force_upcast);

// Ref: diffusers rescale_noise_cfg (Lin et al. 2023, section 3.4).
at::Tensor rescale_noise_cfg(const at::Tensor& noise_cfg, const at::Tensor& noise_pred_text,
                             double guidance_rescale);

// uncond + scale * (text - uncond) of a [2B, ...] prediction ordered [uncond; text], then the
// rescale when guidance_rescale > 0.
at::Tensor apply_classifier_free_guidance(const at::Tensor& noise_pred, double guidance_scale,
                                          double guidance_rescale = 0.0);

// A denoising loop's cross-attention keys and values (UNet2DConditionModel::project_encoder_states):
// projected at the first step and reused while the loop passes the same tensors. A step callback
// can change those in place, unseen, so after each callback they are projected anew.
class LoopProjections {
 public:
  explicit LoopProjections(const UNet2DConditionModel& unet) : unet_(unet) {}
  // Null while blocks stream in (sequential offload): projecting ahead would bring in every
  // transformer block once more per call, for two small GEMMs each.
  const EncoderKeyValues* of(const at::Tensor& encoder_hidden_states, const UNetAddedConditions& added);
  void after_step_callback(const StepCallback& callback);

 private:
  const UNet2DConditionModel& unet_;
  std::optional<EncoderKeyValues> projected_;
  at::Tensor states_, image_embeds_;  // what projected_ was projected from
};

// The step after which diffusers' progress bar advances (higher-order schedulers repeat steps).
inline bool progress_bar_advances(int64_t i, int64_t num_timesteps, int64_t num_warmup_steps, int64_t order) {
  return i == num_timesteps - 1 || ((i + 1) > num_warmup_steps && (i + 1) % order == 0);
}

}  // namespace nd
