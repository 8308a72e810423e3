#include "pipelines/stable_diffusion/pipeline_stable_diffusion.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "pipelines/denoisers/unet_denoiser.h"
#include "pipelines/guiders/classifier_free_guidance.h"

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

at::Tensor StableDiffusionPipeline::encode_text(const std::vector<std::string>& texts, int64_t max_length,
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

PreparedCall StableDiffusionPipeline::encode_prompt_tensors(const StableDiffusionRequest& r) {
  const bool cfg = does_classifier_free_guidance(r.guidance_scale);
  auto [prompt_embeds, negative_prompt_embeds] = encode_prompt(r, cfg);
  PreparedCall call;
  call.batch_size = prompt_embeds.size(0);  // already x num_images_per_prompt
  call.tensors["prompt_embeds"] = cfg ? at::cat({negative_prompt_embeds, prompt_embeds}, 0) : prompt_embeds;
  if (cfg) call.tensors["negative_prompt_embeds"] = negative_prompt_embeds;
  return call;
}

PreparedCall StableDiffusionPipeline::prepare_text_to_image(const StableDiffusionRequest& r) {
  const c10::Device device = execution_device();
  const int64_t vsf = vae_->config().scale_factor();
  // 3. Encode input prompt
  PreparedCall call = encode_prompt_tensors(r);
  // 4. Prepare timesteps
  const int64_t num_steps = retrieve_timesteps(*scheduler_, r.num_inference_steps, device, r.timesteps, r.sigmas);
  call.window = full_schedule(*scheduler_, num_steps);
  // 5. Prepare latent variables
  call.tensors["latents"] =
      initial_noise(r.latents, {call.batch_size, unet_->config().in_channels, r.height / vsf, r.width / vsf},
                    r.generators, device, call.tensors["prompt_embeds"].scalar_type(), *scheduler_);
  return call;
}

PipelineResult StableDiffusionPipeline::denoise(const StableDiffusionRequest& r, PreparedCall call,
                                                const std::vector<const LoopInput*>& inputs,
                                                const std::vector<const AfterStepHook*>& after_step) {
  const std::unique_ptr<Guider> guider = classifier_free_guidance_or_none(r.guidance_scale, r.guidance_rescale);
  UNetDenoiser denoiser(*unet_, "prompt_embeds", inputs);
  // 7. Denoising loop
  DenoisingLoopSpec spec = loop_spec(r, call.window, *scheduler_, denoiser, *guider, offload_.get());
  spec.after_step = after_step;
  const DenoisingLoopResult loop = run_denoising_loop(spec, std::move(call.tensors));
  PipelineResult result{loop.latents, loop.num_timesteps};
  // 8. Decode: latents / scaling_factor through the VAE (upcast only for the x4 upscaler, as diffusers).
  if (!r.output_latents) {
    use_component("vae");
    result.output = decode_latents(*vae_, loop.latents, call.upcast_vae);
  }
  free_components();
  return result;
}

std::vector<ModelCpuOffload::Component> StableDiffusionPipeline::offload_components() const {
  std::vector<ModelCpuOffload::Component> components;
  add_streamed_component(components, "text_encoder", text_encoder_);
  add_streamed_component(components, "unet", unet_);
  add_streamed_component(components, "vae", vae_);
  return components;
}

PipelineResult StableDiffusionPipeline::run(const StableDiffusionRequest& r) {
  c10::NoGradGuard no_grad;
  // Ref: diffusers StableDiffusionPipeline.check_inputs (the ControlNet pipeline takes the control
  // image's size instead, already a multiple of the VAE's scale factor).
  if (r.height % 8 != 0 || r.width % 8 != 0) {
    throw ValueError("`height` and `width` have to be divisible by 8 but are " + std::to_string(r.height) + " and " +
                     std::to_string(r.width) + ".");
  }
  return denoise(r, prepare_text_to_image(r));
}

}  // namespace nd
