#include "pipelines/pipeline_utils.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "core/errors.h"
#include "runtime/host_sync_check.h"
#include "core/random.h"

namespace nd {

bool run_step_callback(const StepCallback& callback, int64_t step, const at::Tensor& timestep,
                       StepTensors& tensors) {
  if (!callback) return false;
  const HostSyncCheckPause user_code;
  const StepCallbackOutput out = callback(step, timestep, tensors);
  for (const auto& [name, tensor] : out.tensors) {
    auto it = tensors.find(name);
    if (it != tensors.end() && tensor.defined()) it->second = tensor;
  }
  return out.interrupt;
}

at::Tensor rows_tensor(const std::vector<std::vector<int64_t>>& rows) {
  const int64_t batch = static_cast<int64_t>(rows.size());
  const int64_t length = rows.empty() ? 0 : static_cast<int64_t>(rows.front().size());
  at::Tensor t = at::empty({batch, length}, at::kLong);
  auto acc = t.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < length; ++i) acc[b][i] = rows[b][i];
  }
  return t;
}

at::Tensor tokenize_padded(const CLIPTokenizer& tokenizer, const std::vector<std::string>& texts,
                           int64_t max_length) {
  // Every text is padded to it: a tokenizer_config.json with an absurd model_max_length would
  // allocate without bound.
  constexpr int64_t kMaxPromptTokens = 1 << 20;
  if (max_length > kMaxPromptTokens) {
    throw ValueError("the tokenizer's model_max_length " + std::to_string(max_length) + " is larger than " +
                     std::to_string(kMaxPromptTokens) + " tokens; check tokenizer_config.json");
  }
  return rows_tensor(tokenizer(texts, PaddingStrategy::kMaxLength, true, max_length).input_ids);
}

at::Tensor repeat_per_prompt(const at::Tensor& embeds, int64_t num_images_per_prompt) {
  // Every prompt encoding divides by it afterwards.
  if (num_images_per_prompt < 1) {
    throw ValueError("`num_images_per_prompt` has to be a positive integer but is " +
                     std::to_string(num_images_per_prompt));
  }
  return num_images_per_prompt == 1 ? embeds : embeds.repeat_interleave(num_images_per_prompt, 0);
}

int64_t retrieve_timesteps(Scheduler& scheduler, int64_t num_inference_steps, c10::Device device,
                           const std::vector<double>& timesteps, const std::vector<double>& sigmas) {
  const bool custom = !timesteps.empty() || !sigmas.empty();
  // A schedule holds a few floats per step; past this bound a typo allocates without end.
  constexpr int64_t kMaxInferenceSteps = 1'000'000;
  if (!custom && (num_inference_steps < 1 || num_inference_steps > kMaxInferenceSteps)) {
    throw ValueError("`num_inference_steps` has to be between 1 and " + std::to_string(kMaxInferenceSteps) +
                     " but is " + std::to_string(num_inference_steps));
  }
  scheduler.set_timesteps(custom ? std::nullopt : std::optional<int64_t>(num_inference_steps), device, timesteps,
                          sigmas);
  return custom ? scheduler.timesteps().size(0) : num_inference_steps;
}

namespace {

TimestepWindow window_of(at::Tensor timesteps, int64_t num_inference_steps, int64_t order) {
  const int64_t warmup = std::max<int64_t>(timesteps.size(0) - num_inference_steps * order, 0);
  return {std::move(timesteps), num_inference_steps, warmup};
}

}  // namespace

TimestepWindow full_schedule(const Scheduler& scheduler, int64_t num_inference_steps) {
  return window_of(scheduler.timesteps(), num_inference_steps, scheduler.order());
}

TimestepWindow get_timesteps(Scheduler& scheduler, int64_t num_inference_steps, double strength,
                             std::optional<double> denoising_start) {
  const at::Tensor all = scheduler.timesteps();
  const int64_t total = all.size(0);
  if (!denoising_start) {
    // A NaN would make the cut below undefined (Python's check reads `strength < 0 or strength > 1`).
    if (!(strength >= 0.0 && strength <= 1.0)) {
      throw ValueError("The value of strength should in [0.0, 1.0] but is " + std::to_string(strength));
    }
    // Ref: int() truncates the float product (50 * 0.58 -> 28).
    const int64_t init_timestep =
        std::min(static_cast<int64_t>(static_cast<double>(num_inference_steps) * strength), num_inference_steps);
    const int64_t t_start = std::max<int64_t>(num_inference_steps - init_timestep, 0);
    const int64_t first = std::min<int64_t>(t_start * scheduler.order(), total);
    scheduler.set_begin_index(t_start * scheduler.order());
    return window_of(all.narrow(0, first, total - first), num_inference_steps - t_start, scheduler.order());
  }
  // Strength is irrelevant when the caller names the timestep to start at.
  const double train = static_cast<double>(scheduler.num_train_timesteps());
  const double cutoff = std::nearbyint(train - *denoising_start * train);
  int64_t steps = (all < cutoff).sum().item<int64_t>();
  // Ref: a second-order scheduler duplicates every timestep but the first; an even count would
  // stop between the two evaluations of one step.
  if (scheduler.order() == 2 && steps % 2 == 0) steps += 1;
  steps = std::min(steps, total);
  const int64_t t_start = total - steps;
  scheduler.set_begin_index(t_start);
  return window_of(all.narrow(0, t_start, steps), steps, scheduler.order());
}

TimestepWindow cut_at_denoising_end(const TimestepWindow& window, const Scheduler& scheduler,
                                    double denoising_end) {
  const double train = static_cast<double>(scheduler.num_train_timesteps());
  const double cutoff = std::nearbyint(train - denoising_end * train);
  const int64_t kept = (window.timesteps >= cutoff).sum().item<int64_t>();
  // Ref: diffusers counts the warm-up steps before the cut.
  return {window.timesteps.narrow(0, 0, kept), kept, window.num_warmup_steps};
}

namespace {

// Runs `fn` with the VAE in float32 when it is float16 and the checkpoint asks for the upcast,
// restoring its dtype afterwards (diffusers: "make sure the VAE is in float32 mode, as it
// overflows in float16").
template <typename Fn>
at::Tensor with_upcast_vae(AutoencoderKL& vae, bool force_upcast, const at::Tensor& input, Fn fn) {
  const at::ScalarType original = vae.dtype();
  const bool upcast = force_upcast && vae.config().force_upcast && original == at::kHalf;
  if (!upcast) return fn(input.to(original));
  vae.to(std::nullopt, at::kFloat);
  try {
    at::Tensor out = fn(input.to(at::kFloat));
    vae.to(std::nullopt, original);
    return out;
  } catch (...) {
    vae.to(std::nullopt, original);
    throw;
  }
}

}  // namespace

void check_generators_for_batch(const std::vector<at::Generator>& generators, int64_t batch_size) {
  if (generators.size() > 1 && static_cast<int64_t>(generators.size()) != batch_size) {
    throw ValueError("You have passed a list of generators of length " + std::to_string(generators.size()) +
                     ", but requested an effective batch size of " + std::to_string(batch_size) +
                     ". Make sure the batch size matches the length of the generators.");
  }
}

at::Tensor encode_image_latents(AutoencoderKL& vae, const at::Tensor& image_in, int64_t batch_size,
                                at::ScalarType dtype, c10::Device device,
                                const std::vector<at::Generator>& generators, bool force_upcast) {
  at::Tensor image = image_in.to(device, dtype);
  at::Tensor init_latents;
  if (image.size(1) == vae.config().latent_channels) {
    init_latents = image;
  } else {
    check_generators_for_batch(generators, batch_size);
    if (generators.size() > 1 && image.size(0) < batch_size) {
      if (batch_size % image.size(0) != 0) {
        throw ValueError("Cannot duplicate `image` of batch size " + std::to_string(image.size(0)) +
                         " to effective batch_size " + std::to_string(batch_size) + " ");
      }
      image = image.repeat({batch_size / image.size(0), 1, 1, 1});
    }
    init_latents = with_upcast_vae(vae, force_upcast, image, [&](const at::Tensor& x) {
      if (generators.size() <= 1) return sample_diagonal_gaussian(vae.encode(x), generators);
      // One VAE encode per image so each draws its latent sample from its own generator.
      std::vector<at::Tensor> parts;
      for (int64_t i = 0; i < batch_size; ++i) {
        parts.push_back(sample_diagonal_gaussian(vae.encode(x.narrow(0, i, 1)), {generators[i]}));
      }
      return at::cat(parts, 0);
    });
    init_latents = init_latents.to(dtype) * vae.config().scaling_factor;
  }
  if (batch_size > init_latents.size(0)) {
    if (batch_size % init_latents.size(0) != 0) {
      throw ValueError("Cannot duplicate `image` of batch size " + std::to_string(init_latents.size(0)) + " to " +
                       std::to_string(batch_size) + " text prompts.");
    }
    // Ref: torch.cat([init_latents] * n) repeats the whole batch, not each image.
    init_latents = init_latents.repeat({batch_size / init_latents.size(0), 1, 1, 1});
  }
  return init_latents;
}

at::Tensor initial_noise(const at::Tensor& latents, at::IntArrayRef shape, const std::vector<at::Generator>& generators,
                         c10::Device device, at::ScalarType dtype, const Scheduler& scheduler) {
  const int64_t batch_size = shape[0];
  check_generators_for_batch(generators, batch_size);
  const at::Tensor noise = latents.defined() ? latents.to(device) : randn_tensor(shape, generators, device, dtype);
  return noise * scheduler.init_noise_sigma().to(noise.device());
}

at::Tensor decode_latents(AutoencoderKL& vae, const at::Tensor& latents, bool force_upcast) {
  return with_upcast_vae(vae, force_upcast, latents / vae.config().scaling_factor,
                         [&](const at::Tensor& z) { return vae.decode(z); });
}


at::Tensor encode_vae_image(AutoencoderKL& vae, const at::Tensor& image, const std::vector<at::Generator>& generators,
                            bool force_upcast) {
  if (generators.size() > 1 && image.size(0) > static_cast<int64_t>(generators.size())) {
    throw ValueError("`image` has a batch of " + std::to_string(image.size(0)) + " but only " +
                     std::to_string(generators.size()) + " generators were passed");
  }
  const at::Tensor latents = with_upcast_vae(vae, force_upcast, image, [&](const at::Tensor& x) {
    if (generators.size() <= 1) return sample_diagonal_gaussian(vae.encode(x), generators);
    std::vector<at::Tensor> parts;
    for (int64_t i = 0; i < x.size(0); ++i) {
      parts.push_back(sample_diagonal_gaussian(vae.encode(x.narrow(0, i, 1)), {generators[i]}));
    }
    return at::cat(parts, 0);
  });
  return latents.to(image.scalar_type()) * vae.config().scaling_factor;
}

at::Tensor repeat_to_batch(const at::Tensor& tensor, int64_t batch_size, const std::string& message) {
  if (tensor.size(0) >= batch_size) return tensor;
  if (batch_size % tensor.size(0) != 0) throw ValueError(message);
  return tensor.repeat({batch_size / tensor.size(0), 1, 1, 1});
}

MaskLatents prepare_mask_latents(AutoencoderKL& vae, const at::Tensor& mask_in, const at::Tensor& masked_image_in,
                                 int64_t batch_size, int64_t height, int64_t width, at::ScalarType dtype,
                                 c10::Device device, const std::vector<at::Generator>& generators,
                                 bool do_classifier_free_guidance, bool force_upcast) {
  // Ref: diffusers: resize the mask to latents shape before concatenating it to the latents, and
  // before converting to dtype (nearest interpolation of the binarised mask).
  const int64_t factor = vae.config().scale_factor();
  at::Tensor mask = at::upsample_nearest2d(mask_in.to(device), {height / factor, width / factor}).to(dtype);
  const std::string total = std::to_string(batch_size);
  mask = repeat_to_batch(
      mask, batch_size,
      "The passed mask and the required batch size don't match. Masks are supposed to be duplicated to a total batch "
      "size of " + total + ", but " + std::to_string(mask.size(0)) +
          " masks were passed. Make sure the number of masks that you pass is divisible by the total requested batch "
          "size.");
  if (do_classifier_free_guidance) mask = at::cat({mask, mask}, 0);
  // Ref: diffusers SDXL: a latent image cannot be masked, and then there is no masked image.
  if (!masked_image_in.defined()) return {mask, at::Tensor()};
  const at::Tensor masked_image = masked_image_in.to(device, dtype);
  at::Tensor masked_image_latents = masked_image.size(1) == vae.config().latent_channels
                                        ? masked_image
                                        : encode_vae_image(vae, masked_image, generators, force_upcast);
  masked_image_latents = repeat_to_batch(
      masked_image_latents, batch_size,
      "The passed images and the required batch size don't match. Images are supposed to be duplicated to a total "
      "batch size of " + total + ", but " + std::to_string(masked_image_latents.size(0)) +
          " images were passed. Make sure the number of images that you pass is divisible by the total requested "
          "batch size.");
  if (do_classifier_free_guidance) masked_image_latents = at::cat({masked_image_latents, masked_image_latents}, 0);
  return {mask, masked_image_latents.to(device, dtype)};
}

void check_inpainting_unet_channels(int64_t in_channels, int64_t latents, const MaskLatents& m) {
  if (in_channels == 4) return;
  if (in_channels != 9) {
    throw ValueError("The unet UNet2DConditionModel should have either 4 or 9 input channels, not " +
                     std::to_string(in_channels) + ".");
  }
  const int64_t mask = m.mask.size(1);
  const int64_t masked = m.masked_image_latents.defined() ? m.masked_image_latents.size(1) : 0;
  if (latents + mask + masked != in_channels) {
    throw ValueError("Incorrect configuration settings! The config of `pipeline.unet` expects " +
                     std::to_string(in_channels) + " but received `num_channels_latents`: " + std::to_string(latents) +
                     " + `num_channels_mask`: " + std::to_string(mask) +
                     " + `num_channels_masked_image`: " + std::to_string(masked) + " = " +
                     std::to_string(latents + mask + masked) +
                     ". Please verify the config of `pipeline.unet` or your `mask_image` or `image` input.");
  }
}

void check_steps_after_strength(const TimestepWindow& window, double strength, bool count_steps) {
  if (window.timesteps.size(0) > 0 && (!count_steps || window.num_inference_steps >= 1)) return;
  throw ValueError("After adjusting the num_inference_steps by strength parameter: " + std::to_string(strength) +
                   ", the number of pipelinesteps is " + std::to_string(window.num_inference_steps) +
                   " which is < 1 and not appropriate for this pipeline.");
}

}  // namespace nd
