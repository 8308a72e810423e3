#include "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include "core/errors.h"
#include "core/progress_bar.h"
#include "core/random.h"

namespace nd {
namespace {

at::Tensor ids_tensor(const std::vector<std::vector<int64_t>>& rows) {
  const int64_t batch = static_cast<int64_t>(rows.size());
  const int64_t length = rows.empty() ? 0 : static_cast<int64_t>(rows.front().size());
  at::Tensor ids = at::empty({batch, length}, at::kLong);
  auto acc = ids.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < length; ++i) acc[b][i] = rows[b][i];
  }
  return ids;
}

// Ref: diffusers encode_prompt: embeddings for each prompt repeated num_images_per_prompt times,
// keeping each prompt's copies adjacent ([p0, p0, p1, p1]).
at::Tensor repeat_per_prompt(const at::Tensor& embeds, int64_t num_images_per_prompt) {
  if (num_images_per_prompt == 1) return embeds;
  return embeds.repeat_interleave(num_images_per_prompt, 0);
}

}  // namespace

StableDiffusionImg2ImgPipeline::StableDiffusionImg2ImgPipeline(
    std::shared_ptr<CLIPTokenizer> tokenizer, std::shared_ptr<CLIPTextModel> text_encoder,
    std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<AutoencoderKL> vae,
    std::shared_ptr<Scheduler> scheduler)
    : tokenizer_(std::move(tokenizer)), text_encoder_(std::move(text_encoder)), unet_(std::move(unet)),
      vae_(std::move(vae)), scheduler_(std::move(scheduler)) {
  if (!unet_ || !vae_ || !scheduler_) {
    throw ValueError("StableDiffusionImg2ImgPipeline needs a unet, a vae and a scheduler");
  }
}

at::Tensor StableDiffusionImg2ImgPipeline::encode_text(const std::vector<std::string>& texts,
                                                       int64_t max_length,
                                                       std::optional<int64_t> clip_skip) const {
  if (!tokenizer_ || !text_encoder_) {
    throw ValueError("a prompt needs the pipeline's tokenizer and text_encoder; pass prompt_embeds instead");
  }
  const CLIPBatchEncoding enc = (*tokenizer_)(texts, PaddingStrategy::kMaxLength, true, max_length);
  const at::Tensor ids = ids_tensor(enc.input_ids).to(text_encoder_->device());
  if (!clip_skip) return text_encoder_->forward(ids, std::nullopt, false).last_hidden_state;
  // Ref: diffusers encode_prompt: hidden_states[-(clip_skip + 1)], then the final LayerNorm.
  const CLIPTextOutput out = text_encoder_->forward(ids, std::nullopt, true);
  const int64_t index = static_cast<int64_t>(out.hidden_states.size()) - (*clip_skip + 1);
  if (*clip_skip < 0 || index < 0) {
    throw ValueError("clip_skip=" + std::to_string(*clip_skip) + " is out of range for a text encoder with " +
                     std::to_string(out.hidden_states.size() - 1) + " layers");
  }
  return text_encoder_->final_layer_norm(out.hidden_states[index]);
}

std::pair<at::Tensor, at::Tensor> StableDiffusionImg2ImgPipeline::encode_prompt(
    const StableDiffusionImg2ImgRequest& r, bool do_classifier_free_guidance) const {
  const at::ScalarType dtype = text_encoder_ ? text_encoder_->dtype() : unet_->dtype();
  const c10::Device device = execution_device();
  at::Tensor prompt_embeds = r.prompt_embeds;
  if (!prompt_embeds.defined()) {
    const int64_t max_length = tokenizer_ && tokenizer_->model_max_length() ? *tokenizer_->model_max_length() : 77;
    prompt_embeds = encode_text(r.prompt, max_length, r.clip_skip);
  }
  prompt_embeds = repeat_per_prompt(prompt_embeds.to(device, dtype), r.num_images_per_prompt);

  at::Tensor negative = r.negative_prompt_embeds;
  if (do_classifier_free_guidance && !negative.defined()) {
    const int64_t batch = prompt_embeds.size(0) / r.num_images_per_prompt;
    std::vector<std::string> uncond = r.negative_prompt;
    if (uncond.empty()) uncond.assign(static_cast<std::size_t>(batch), "");
    if (static_cast<int64_t>(uncond.size()) != batch) {
      throw ValueError("`negative_prompt` has batch size " + std::to_string(uncond.size()) +
                       ", but `prompt` has batch size " + std::to_string(batch) +
                       ". Please make sure that passed `negative_prompt` matches the batch size of `prompt`.");
    }
    // Ref: diffusers encode_prompt: the negative prompt is padded to the prompt embeddings'
    // length and never uses clip_skip.
    negative = encode_text(uncond, prompt_embeds.size(1), std::nullopt);
  }
  if (do_classifier_free_guidance) {
    negative = repeat_per_prompt(negative.to(device, dtype), r.num_images_per_prompt);
  }
  return {prompt_embeds, negative};
}

at::Tensor StableDiffusionImg2ImgPipeline::prepare_latents(
    const at::Tensor& image_in, const at::Tensor& timestep, int64_t batch_size, at::ScalarType dtype,
    const std::vector<at::Generator>& generators) const {
  // Ref: diffusers StableDiffusionImg2ImgPipeline.prepare_latents.
  const c10::Device device = execution_device();
  at::Tensor image = image_in.to(device, dtype);
  at::Tensor init_latents;
  if (image.size(1) == vae_->config().latent_channels) {
    init_latents = image;
  } else {
    if (generators.size() > 1 && static_cast<int64_t>(generators.size()) != batch_size) {
      throw ValueError("You have passed a list of generators of length " + std::to_string(generators.size()) +
                       ", but requested an effective batch size of " + std::to_string(batch_size) +
                       ". Make sure the batch size matches the length of the generators.");
    }
    if (generators.size() > 1) {
      if (image.size(0) < batch_size && batch_size % image.size(0) == 0) {
        image = image.repeat({batch_size / image.size(0), 1, 1, 1});
      } else if (image.size(0) < batch_size) {
        throw ValueError("Cannot duplicate `image` of batch size " + std::to_string(image.size(0)) +
                         " to effective batch_size " + std::to_string(batch_size) + " ");
      }
      // One VAE encode per image so each draws its latent sample from its own generator.
      std::vector<at::Tensor> parts;
      for (int64_t i = 0; i < batch_size; ++i) {
        parts.push_back(sample_diagonal_gaussian(vae_->encode(image.narrow(0, i, 1)), {generators[i]}));
      }
      init_latents = at::cat(parts, 0);
    } else {
      init_latents = sample_diagonal_gaussian(vae_->encode(image), generators);
    }
    init_latents = init_latents * vae_->config().scaling_factor;
  }
  if (batch_size > init_latents.size(0)) {
    if (batch_size % init_latents.size(0) != 0) {
      throw ValueError("Cannot duplicate `image` of batch size " + std::to_string(init_latents.size(0)) +
                       " to " + std::to_string(batch_size) + " text prompts.");
    }
    // Ref: diffusers: torch.cat([init_latents] * n) repeats the whole batch, not each image.
    init_latents = init_latents.repeat({batch_size / init_latents.size(0), 1, 1, 1});
  }
  const at::Tensor noise = randn_tensor(init_latents.sizes(), generators, device, dtype);
  return scheduler_->add_noise(init_latents, noise, timestep.reshape({1}).expand({init_latents.size(0)}));
}

at::Tensor StableDiffusionImg2ImgPipeline::run(const StableDiffusionImg2ImgRequest& r) {
  c10::NoGradGuard no_grad;
  if (r.strength < 0 || r.strength > 1) {
    throw ValueError("The value of strength should in [0.0, 1.0] but is " + std::to_string(r.strength));
  }
  if (!r.image.defined() || r.image.dim() != 4) throw ValueError("`image` must be a 4-d tensor [B, C, H, W]");
  const c10::Device device = execution_device();
  // Ref: diffusers: guidance applies when guidance_scale > 1 (and the UNet has no time_cond_proj).
  const bool cfg = r.guidance_scale > 1.0;

  // 3. Encode input prompt
  auto [prompt_embeds, negative_prompt_embeds] = encode_prompt(r, cfg);
  const int64_t batch_size = prompt_embeds.size(0);  // already × num_images_per_prompt

  // 5. set timesteps, then cut the schedule by strength
  // Ref: diffusers retrieve_timesteps: a custom schedule's length replaces num_inference_steps.
  const bool custom_schedule = !r.timesteps.empty() || !r.sigmas.empty();
  scheduler_->set_timesteps(custom_schedule ? std::nullopt : std::optional<int64_t>(r.num_inference_steps),
                            device, r.timesteps, r.sigmas);
  const int64_t num_steps = custom_schedule ? scheduler_->timesteps().size(0) : r.num_inference_steps;
  // Ref: diffusers get_timesteps: int() truncates the float product (50 * 0.58 -> 28).
  const int64_t init_timestep = std::min(static_cast<int64_t>(static_cast<double>(num_steps) * r.strength), num_steps);
  const int64_t t_start = std::max<int64_t>(num_steps - init_timestep, 0);
  const int64_t order = scheduler_->order();
  const at::Tensor all_timesteps = scheduler_->timesteps();
  const int64_t first = std::min<int64_t>(t_start * order, all_timesteps.size(0));
  const at::Tensor timesteps = all_timesteps.narrow(0, first, all_timesteps.size(0) - first);
  scheduler_->set_begin_index(t_start * order);
  if (timesteps.size(0) == 0) {
    throw ValueError("After adjusting the num_inference_steps by strength parameter: " + std::to_string(r.strength) +
                     ", the number of pipelinesteps is " + std::to_string(num_steps - t_start) +
                     " which is < 1 and not appropriate for this pipeline.");
  }

  // 6. Prepare latent variables
  StepTensors tensors;
  tensors.latents = prepare_latents(r.image, timesteps[0], batch_size, prompt_embeds.scalar_type(), r.generators);
  tensors.negative_prompt_embeds = negative_prompt_embeds;
  tensors.prompt_embeds = cfg ? at::cat({negative_prompt_embeds, prompt_embeds}, 0) : prompt_embeds;

  // 8. Denoising loop
  StepOptions step_options;
  step_options.eta = r.eta;
  step_options.generators = r.generators;
  const int64_t num_loop_steps = num_steps - t_start;
  const int64_t num_warmup_steps = timesteps.size(0) - num_loop_steps * order;
  {
    ProgressBar progress(num_loop_steps, r.progress_bar);
    for (int64_t i = 0; i < timesteps.size(0); ++i) {
      const at::Tensor t = timesteps[i];
      at::Tensor model_input = cfg ? at::cat({tensors.latents, tensors.latents}, 0) : tensors.latents;
      model_input = scheduler_->scale_model_input(model_input, t);
      at::Tensor noise_pred = unet_->forward(model_input, t, tensors.prompt_embeds);
      if (cfg) {
        const std::vector<at::Tensor> parts = noise_pred.chunk(2, 0);
        noise_pred = parts[0] + r.guidance_scale * (parts[1] - parts[0]);
      }
      tensors.latents = scheduler_->step(noise_pred, t, tensors.latents, step_options).prev_sample;
      if (r.callback_on_step_end) r.callback_on_step_end(i, t, tensors);
      if (i == timesteps.size(0) - 1 || ((i + 1) > num_warmup_steps && (i + 1) % order == 0)) progress.update();
    }
  }
  if (r.output_latents) return tensors.latents;
  // 9. Decode: latents / scaling_factor through the VAE
  return vae_->decode(tensors.latents / vae_->config().scaling_factor);
}

}  // namespace nd
