#include "pipelines/kandinsky2_2/pipeline_kandinsky2_2_prior.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "pipelines/denoisers/prior_denoiser.h"
#include "pipelines/guiders/classifier_free_guidance.h"

namespace nd {
KandinskyV22PriorPipeline::KandinskyV22PriorPipeline(std::shared_ptr<PriorTransformer> prior,
                                                     std::shared_ptr<CLIPVisionModelWithProjection> image_encoder,
                                                     std::shared_ptr<CLIPTextModel> text_encoder,
                                                     std::shared_ptr<CLIPTokenizer> tokenizer,
                                                     std::shared_ptr<Scheduler> scheduler)
    : prior_(std::move(prior)), image_encoder_(std::move(image_encoder)), text_encoder_(std::move(text_encoder)),
      tokenizer_(std::move(tokenizer)), scheduler_(std::move(scheduler)) {
  if (!prior_ || !text_encoder_ || !tokenizer_ || !scheduler_) {
    throw ValueError("KandinskyV22PriorPipeline needs a prior, a text_encoder, a tokenizer and a scheduler");
  }
  if (!text_encoder_->with_projection()) {
    throw ValueError("KandinskyV22PriorPipeline needs a CLIPTextModelWithProjection text_encoder (it reads text_embeds)");
  }
}

std::pair<at::Tensor, at::Tensor> KandinskyV22PriorPipeline::encode_text(const std::vector<std::string>& texts) const {
  const int64_t max_length = tokenizer_->model_max_length() ? *tokenizer_->model_max_length() : 77;
  // Ref: diffusers _encode_prompt: padding="max_length", truncation=True; the encoder gets no mask,
  // the prior gets the tokenizer's mask.
  const CLIPBatchEncoding enc = (*tokenizer_)(texts, PaddingStrategy::kMaxLength, true, max_length);
  const c10::Device device = execution_device();
  use_component("text_encoder", "prior");  // the zero image's embedding, if needed, comes after the prior
  const at::Tensor ids = rows_tensor(enc.input_ids).to(text_encoder_->device());
  const at::Tensor mask = rows_tensor(enc.attention_mask).to(at::kBool).to(device);
  return {ids, mask};
}

KandinskyV22PriorPipeline::EncodedPrompt KandinskyV22PriorPipeline::encode_prompt(
    const std::vector<std::string>& prompt, int64_t n, bool cfg, const std::vector<std::string>& negative_prompt) const {
  const c10::Device device = execution_device();
  const int64_t batch_size = static_cast<int64_t>(prompt.size());
  auto [ids, text_mask] = encode_text(prompt);
  const CLIPTextOutput out = text_encoder_->forward(ids, std::nullopt, false);
  EncodedPrompt e;
  e.prompt_embeds = out.text_embeds->to(device).repeat_interleave(n, 0);                    // [B n, proj]
  e.text_encoder_hidden_states = out.last_hidden_state.to(device).repeat_interleave(n, 0);  // [B n, L, hidden]
  e.text_mask = text_mask.repeat_interleave(n, 0);
  if (!cfg) return e;

  std::vector<std::string> uncond = negative_prompt;
  if (uncond.empty()) uncond.assign(static_cast<std::size_t>(batch_size), "");
  if (static_cast<int64_t>(uncond.size()) != batch_size) {
    throw ValueError("`negative_prompt` has batch size " + std::to_string(uncond.size()) + ", but `prompt` has batch size " +
                     std::to_string(batch_size) +
                     ". Please make sure that passed `negative_prompt` matches the batch size of `prompt`.");
  }
  auto [uncond_ids, uncond_mask] = encode_text(uncond);
  const CLIPTextOutput neg = text_encoder_->forward(uncond_ids, std::nullopt, false);
  // Ref: diffusers: repeat(1, n).view(B n, ...) keeps each prompt's copies adjacent, as repeat_interleave.
  const at::Tensor negative_prompt_embeds = neg.text_embeds->to(device).repeat_interleave(n, 0);
  const at::Tensor uncond_hidden = neg.last_hidden_state.to(device).repeat_interleave(n, 0);
  e.prompt_embeds = at::cat({negative_prompt_embeds, e.prompt_embeds}, 0);
  e.text_encoder_hidden_states = at::cat({uncond_hidden, e.text_encoder_hidden_states}, 0);
  e.text_mask = at::cat({uncond_mask.repeat_interleave(n, 0), e.text_mask}, 0);
  return e;
}

at::Tensor KandinskyV22PriorPipeline::get_zero_embed(int64_t batch_size) {
  if (!image_encoder_) {
    throw ValueError("KandinskyV22PriorPipeline needs an image_encoder for the negative image embedding when no "
                     "negative_prompt is given");
  }
  c10::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(zero_embed_mutex_);
  // Keyed on the execution device, not the encoder's: with model offloading the encoder sits on
  // the host between calls, and the cached embedding stays valid.
  const c10::Device device = execution_device();
  if (!zero_embed_.defined() || zero_embed_.device() != device ||
      zero_embed_.scalar_type() != image_encoder_->dtype()) {
    use_component("image_encoder");
    const int64_t s = image_encoder_->config().image_size;
    const at::Tensor zero_img = at::zeros(
        {1, image_encoder_->config().num_channels, s, s},
        at::TensorOptions().device(image_encoder_->device()).dtype(image_encoder_->dtype()));
    zero_embed_ = image_encoder_->forward(zero_img, false).image_embeds.to(device);
  }
  return zero_embed_.repeat({batch_size, 1});
}

KandinskyPriorOutput KandinskyV22PriorPipeline::run(const KandinskyV22PriorRequest& r) {
  c10::NoGradGuard no_grad;
  if (r.prompt.empty()) throw ValueError("`prompt` must hold at least one text");
  if (r.num_images_per_prompt < 1) throw ValueError("`num_images_per_prompt` must be a positive integer");
  const c10::Device device = execution_device();

  // Ref: diffusers __call__: with a negative prompt, its image embedding is generated alongside
  // (prompt + negative_prompt), and the negative prompt of both halves is the negative prompt.
  std::vector<std::string> prompt = r.prompt;
  std::vector<std::string> negative_prompt;
  const bool has_negative = !r.negative_prompt.empty();
  if (has_negative) {
    prompt.insert(prompt.end(), r.negative_prompt.begin(), r.negative_prompt.end());
    negative_prompt = r.negative_prompt;
    negative_prompt.insert(negative_prompt.end(), r.negative_prompt.begin(), r.negative_prompt.end());
  }
  const int64_t batch_size = static_cast<int64_t>(prompt.size()) * r.num_images_per_prompt;
  const bool cfg = r.guidance_scale > 1.0;

  // 1. Encode the prompt
  const EncodedPrompt encoded = encode_prompt(prompt, r.num_images_per_prompt, cfg, negative_prompt);
  StepTensors tensors{{"prompt_embeds", encoded.prompt_embeds},
                      {"text_encoder_hidden_states", encoded.text_encoder_hidden_states},
                      {"text_mask", encoded.text_mask}};

  // 2. Timesteps
  scheduler_->set_timesteps(r.num_inference_steps, device, {}, {});
  const at::Tensor timesteps = scheduler_->timesteps();

  // 3. Latents. Ref: diffusers prepare_latents (in prompt_embeds' dtype).
  const int64_t embedding_dim = prior_->config().embedding_dim;
  const at::ScalarType dtype = tensors["prompt_embeds"].scalar_type();
  if (r.latents.defined() &&
      (r.latents.dim() != 2 || r.latents.size(0) != batch_size || r.latents.size(1) != embedding_dim)) {
    throw ValueError("Unexpected latents shape, got " + c10::str(r.latents.sizes()) + ", expected [" +
                     std::to_string(batch_size) + ", " + std::to_string(embedding_dim) + "]");
  }
  tensors["latents"] = initial_noise(r.latents, {batch_size, embedding_dim}, r.generators, device, dtype, *scheduler_);

  // 4. Denoising loop
  const std::unique_ptr<Guider> guider = classifier_free_guidance_or_none(r.guidance_scale);
  PriorDenoiser denoiser(*prior_);
  DenoisingLoopSpec spec =
      loop_spec(r, {timesteps, timesteps.size(0), 0}, *scheduler_, denoiser, *guider, offload_.get());
  spec.scales_model_input = false;
  spec.passes_prev_timestep = true;
  spec.progress_per_timestep = true;
  spec.component = "prior";
  const DenoisingLoopResult loop = run_denoising_loop(spec, std::move(tensors));

  // 5. Un-normalize, and the negative image embedding
  const at::Tensor latents = prior_->post_process_latents(loop.latents);
  KandinskyPriorOutput out;
  out.num_timesteps = loop.num_timesteps;
  if (!has_negative) {
    out.image_embeds = latents;
    out.negative_image_embeds = get_zero_embed(latents.size(0)).to(latents.device());
  } else {
    const std::vector<at::Tensor> parts = latents.chunk(2, 0);
    out.image_embeds = parts[0];
    out.negative_image_embeds = parts[1];
  }
  free_components();
  return out;
}

std::vector<ModelCpuOffload::Component> KandinskyV22PriorPipeline::offload_components() const {
  std::vector<ModelCpuOffload::Component> components;
  add_streamed_component(components, "text_encoder", text_encoder_);
  add_streamed_component(components, "image_encoder", image_encoder_);
  add_streamed_component(components, "prior", prior_);
  return components;
}

}  // namespace nd
