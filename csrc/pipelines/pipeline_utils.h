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
#include "schedulers/scheduling_utils.h"
#include "tokenizers/clip_tokenizer.h"

namespace nd {

// The tensors diffusers exposes to callback_on_step_end, by diffusers' names
// (`_callback_tensor_inputs`).
using StepTensors = std::map<std::string, at::Tensor>;

// What a step callback returns: the tensors it replaces, and whether it asked the loop to stop
// (diffusers' `pipe._interrupt = True`: the remaining steps are skipped, the latents decoded).
struct StepCallbackOutput {
  StepTensors tensors;
  bool interrupt = false;
};
using StepCallback =
    std::function<StepCallbackOutput(int64_t step, const at::Tensor& timestep, const StepTensors& tensors)>;

// Calls the user's callback (if any) and writes back the tensors it returned; names the
// pipeline does not expose are ignored, as diffusers pops only its own. Returns whether the
// callback interrupted the loop.
bool run_step_callback(const StepCallback& callback, int64_t step, const at::Tensor& timestep,
                       StepTensors& tensors);

// What a pipeline call returns to Python: the decoded images in [-1, 1] (or the latents, when
// asked for them) and diffusers' num_timesteps, the number of timesteps its loop ran over.
struct PipelineResult {
  at::Tensor output;
  int64_t num_timesteps = 0;
};

// Equal-length rows (token ids, attention masks) as a [B, length] int64 tensor.
at::Tensor rows_tensor(const std::vector<std::vector<int64_t>>& rows);

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
  at::Tensor timesteps;          // the part of the schedule the loop runs
  int64_t num_inference_steps;   // the progress bar's total
  int64_t num_warmup_steps = 0;  // steps before the bar advances once per scheduler order
};

// The whole schedule as set, with diffusers' warm-up count: len(timesteps) - steps * order.
TimestepWindow full_schedule(const Scheduler& scheduler, int64_t num_inference_steps);

// Ref: diffusers StableDiffusionXLImg2ImgPipeline.get_timesteps. Without `denoising_start` it is
// StableDiffusionImg2ImgPipeline.get_timesteps (the strength cut); with it, the schedule starts at
// the first timestep below (1 - denoising_start) * num_train_timesteps. Sets the begin index.
TimestepWindow get_timesteps(Scheduler& scheduler, int64_t num_inference_steps, double strength,
                             std::optional<double> denoising_start);

// Ref: diffusers StableDiffusionXLImg2ImgPipeline.__call__ (denoising_end): keeps the timesteps
// at or above round(T - denoising_end * T).
TimestepWindow cut_at_denoising_end(const TimestepWindow& window, const Scheduler& scheduler,
                                    double denoising_end);

// Ref: diffusers prepare_latents: a list of generators gives one per image of the batch.
void check_generators_for_batch(const std::vector<at::Generator>& generators, int64_t batch_size);

// The first half of diffusers' img2img prepare_latents: VAE-encoded, sampled and scaled latents
// of `image` ([B, 3, H, W] in [-1, 1]; latents with the VAE's latent_channels pass through),
// repeated to `batch_size` (an error if that is not a multiple). A list of generators gives one
// VAE encode per image, each drawing from its own generator, as diffusers does.
// `force_upcast` encodes a float16 VAE in float32 (diffusers' SDXL pipelines).
at::Tensor encode_image_latents(AutoencoderKL& vae, const at::Tensor& image, int64_t batch_size,
                                at::ScalarType dtype, c10::Device device,
                                const std::vector<at::Generator>& generators, bool force_upcast);

// Ref: diffusers StableDiffusionInpaintPipeline._encode_vae_image: VAE-encoded, sampled and scaled
// latents of `image` ([N, 3, H, W] in [-1, 1]), one per image, not repeated. With a list of
// generators, image i is encoded alone and draws from generator i (so a single image uses only
// generator 0, whatever the batch).
at::Tensor encode_vae_image(AutoencoderKL& vae, const at::Tensor& image, const std::vector<at::Generator>& generators,
                            bool force_upcast);

// `tensor` repeated along dim 0 to `batch_size` (the whole batch repeated, as torch's repeat); a
// ValueError with `message` when batch_size is not a multiple of its batch.
at::Tensor repeat_to_batch(const at::Tensor& tensor, int64_t batch_size, const std::string& message);

// The inpainting mask at latent size and the masked image's latents, each repeated to
// `batch_size` and doubled under classifier-free guidance ([uncond; cond] halves alike).
struct MaskLatents {
  at::Tensor mask;                  // [model batch, 1, h, w]
  at::Tensor masked_image_latents;  // [model batch, latent_channels, h, w]
};

// Ref: diffusers StableDiffusionInpaintPipeline.prepare_mask_latents: `mask` ([N, 1, H, W], the
// mask processor's output) reaches latent size by nearest interpolation; `masked_image` is
// VAE-encoded with the generators unless it already has the VAE's latent channels; an undefined
// `masked_image` (SDXL's latent image) gives undefined masked_image_latents.
MaskLatents prepare_mask_latents(AutoencoderKL& vae, const at::Tensor& mask, const at::Tensor& masked_image,
                                 int64_t batch_size, int64_t height, int64_t width, at::ScalarType dtype,
                                 c10::Device device, const std::vector<at::Generator>& generators,
                                 bool do_classifier_free_guidance, bool force_upcast);

// Ref: diffusers' inpainting pipelines, step 8: a UNet has 4 input channels, or 9 that the
// latents, the mask and the masked image's latents fill.
void check_inpainting_unet_channels(int64_t in_channels, int64_t latent_channels, const MaskLatents& mask_latents);

// Ref: the check after get_timesteps in diffusers' image-to-image and inpainting pipelines: the
// strength cut left no timestep to run. The inpainting pipelines check the step count instead
// (`count_steps`), which also refuses a cut that keeps only the extra timestep of a schedule longer
// than its step count (PNDM's).
void check_steps_after_strength(const TimestepWindow& window, double strength, bool count_steps = false);

// The initial noise of text-to-image (diffusers prepare_latents), scaled by the scheduler's
// initial sigma: `latents` when given, else drawn from the generators (none, one, or one per image).
at::Tensor initial_noise(const at::Tensor& latents, at::IntArrayRef shape, const std::vector<at::Generator>& generators,
                         c10::Device device, at::ScalarType dtype, const Scheduler& scheduler);

// Latents back to the VAE's space (inverse of the scaling above) and decoded; `force_upcast`
// decodes a float16 VAE in float32 as diffusers' SDXL pipelines do.
at::Tensor decode_latents(AutoencoderKL& vae, const at::Tensor& latents, bool force_upcast);

}  // namespace nd
