#include "pipelines/stable_diffusion/pipeline_stable_diffusion.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "core/host_sync_check.h"
#include "core/progress_bar.h"
#include "core/random.h"

namespace nd {

StableDiffusionPipeline::StableDiffusionPipeline(std::shared_ptr<CLIPTokenizer> tokenizer,
                                                 std::shared_ptr<CLIPTextModel> text_encoder,
                                                 std::shared_ptr<UNet2DConditionModel> unet,
                                                 std::shared_ptr<AutoencoderKL> vae,
                                                 std::shared_ptr<Scheduler> scheduler)
    : tokenizer_(std::move(tokenizer)), text_encoder_(std::move(text_encoder)), unet_(std::move(unet)),
      vae_(std::move(vae)), scheduler_(std::move(scheduler)) {
  if (!unet_ || !vae_ || !scheduler_) {
    throw ValueError("a Stable Diffusion pipeline needs a unet, a vae and a scheduler");
  }
}

at::Tensor StableDiffusionPipeline::encode_text(const std::vector<std::string>& texts,
                                                       int64_t max_length,
                                                       std::optional<int64_t> clip_skip) const {
  if (!tokenizer_ || !text_encoder_) {
    throw ValueError("a prompt needs the pipeline's tokenizer and text_encoder; pass prompt_embeds instead");
  }
  use_component("text_encoder", component_after_prompt());
  const at::Tensor ids = tokenize_padded(*tokenizer_, texts, max_length).to(text_encoder_->device());
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

std::pair<at::Tensor, at::Tensor> StableDiffusionPipeline::encode_prompt(
    const StableDiffusionRequest& r, bool do_classifier_free_guidance) const {
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

at::Tensor StableDiffusionPipeline::denoise(const StableDiffusionRequest& r, StepTensors tensors,
                                            const TimestepWindow& window, const LoopConditioning& conditioning) {
  // Ref: diffusers: guidance applies when guidance_scale > 1 (and the UNet has no time_cond_proj).
  const bool cfg = r.guidance_scale > 1.0;
  StepOptions step_options;
  step_options.eta = r.eta;
  step_options.generators = r.generators;
  const at::Tensor& timesteps = window.timesteps;
  const int64_t order = scheduler_->order();
  const int64_t num_warmup_steps = timesteps.size(0) - window.num_inference_steps * order;
  use_component("unet");
  // The scheduler reads timestep values; from a host copy, no step waits for the GPU.
  const at::Tensor host_timesteps = timesteps.cpu();
  LoopProjections projections(*unet_);
  {
    ProgressBar progress(window.num_inference_steps, r.progress_bar);
    for (int64_t i = 0; i < timesteps.size(0); ++i) {
      const StepSyncCheck no_host_sync(i);
      const at::Tensor t = timesteps[i];
      const at::Tensor t_host = host_timesteps[i];
      const at::Tensor& latents = tensors["latents"];
      at::Tensor model_input = cfg ? at::cat({latents, latents}, 0) : latents;
      model_input = scheduler_->scale_model_input(model_input, t_host);
      const at::Tensor& prompt_embeds = tensors["prompt_embeds"];
      const ControlNetGuidance* control = conditioning.control;
      const std::optional<UNetControlResiduals> residuals =
          control ? control->residuals(i, model_input, latents, t, t_host, prompt_embeds,
                                       tensors.at(control->tensor_name()), *scheduler_)
                  : std::nullopt;
      if (conditioning.image.defined()) model_input = at::cat({model_input, conditioning.image}, 1);
      UNetAddedConditions added;
      added.class_labels = conditioning.class_labels;
      at::Tensor noise_pred = unet_->forward(model_input, t, prompt_embeds, added, projections.of(prompt_embeds, {}),
                                             residuals ? &*residuals : nullptr);
      if (cfg) noise_pred = apply_classifier_free_guidance(noise_pred, r.guidance_scale, r.guidance_rescale);
      tensors["latents"] = scheduler_->step(noise_pred, t_host, latents, step_options).prev_sample;
      run_step_callback(r.callback_on_step_end, i, t, tensors);
      projections.after_step_callback(r.callback_on_step_end);
      if (progress_bar_advances(i, timesteps.size(0), num_warmup_steps, order)) progress.update();
    }
  }
  if (r.output_latents) {
    free_components();
    return tensors["latents"];
  }
  // Decode: latents / scaling_factor through the VAE (upcast only for the x4 upscaler, as diffusers).
  use_component("vae");
  at::Tensor image = decode_latents(*vae_, tensors["latents"], conditioning.upcast_vae);
  free_components();
  return image;
}

std::vector<ModelCpuOffload::Component> StableDiffusionPipeline::offload_components() const {
  std::vector<ModelCpuOffload::Component> components;
  add_streamed_component(components, "text_encoder", text_encoder_);
  add_streamed_component(components, "unet", unet_);
  add_streamed_component(components, "vae", vae_);
  return components;
}

at::Tensor StableDiffusionPipeline::run(const StableDiffusionRequest& r) {
  // Ref: diffusers StableDiffusionPipeline.check_inputs (the ControlNet pipeline takes the control
  // image's size instead, already a multiple of the VAE's scale factor).
  if (r.height % 8 != 0 || r.width % 8 != 0) {
    throw ValueError("`height` and `width` have to be divisible by 8 but are " + std::to_string(r.height) + " and " +
                     std::to_string(r.width) + ".");
  }
  return generate(r, nullptr, nullptr);
}

at::Tensor StableDiffusionPipeline::generate(const StableDiffusionRequest& r, const ControlNetModel* controlnet,
                                             const ControlNetRequest* control) {
  c10::NoGradGuard no_grad;
  const c10::Device device = execution_device();
  const int64_t vsf = vae_->config().scale_factor();
  const bool cfg = r.guidance_scale > 1.0;

  // 3. Encode input prompt
  auto [prompt_embeds, negative_prompt_embeds] = encode_prompt(r, cfg);
  const int64_t batch_size = prompt_embeds.size(0);  // already x num_images_per_prompt

  // 4. Prepare timesteps
  const int64_t num_steps = retrieve_timesteps(*scheduler_, r.num_inference_steps, device, r.timesteps, r.sigmas);

  // 5. Prepare latent variables: Ref: diffusers prepare_latents, scaled by the initial sigma.
  if (r.generators.size() > 1 && static_cast<int64_t>(r.generators.size()) != batch_size) {
    throw ValueError("You have passed a list of generators of length " + std::to_string(r.generators.size()) +
                     ", but requested an effective batch size of " + std::to_string(batch_size) +
                     ". Make sure the batch size matches the length of the generators.");
  }
  at::Tensor latents = r.latents.defined()
                           ? r.latents.to(device)
                           : randn_tensor({batch_size, unet_->config().in_channels, r.height / vsf, r.width / vsf},
                                          r.generators, device, prompt_embeds.scalar_type());
  latents = latents * scheduler_->init_noise_sigma().to(latents.device());

  // 7. Denoising loop
  StepTensors tensors{{"latents", latents},
                      {"prompt_embeds", cfg ? at::cat({negative_prompt_embeds, prompt_embeds}, 0) : prompt_embeds}};
  if (cfg) tensors["negative_prompt_embeds"] = negative_prompt_embeds;
  const TimestepWindow window{scheduler_->timesteps(), num_steps};
  std::optional<ControlNetGuidance> guidance;
  if (controlnet) {
    guidance.emplace(*controlnet, *control, batch_size, r.num_images_per_prompt, cfg, window.timesteps.size(0), device,
                     "image");
    tensors["image"] = guidance->image();
  }
  LoopConditioning conditioning;
  conditioning.control = guidance ? &*guidance : nullptr;
  return denoise(r, std::move(tensors), window, conditioning);
}

}  // namespace nd
