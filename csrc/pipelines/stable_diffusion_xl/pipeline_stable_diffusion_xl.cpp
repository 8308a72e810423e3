#include "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>

#include "core/errors.h"
#include "core/random.h"
#include "pipelines/denoisers/unet_denoiser.h"
#include "pipelines/guiders/classifier_free_guidance.h"
#include "pipelines/loop_inputs/added_conditions.h"

namespace nd {
namespace {

std::vector<double> concat_ids(std::initializer_list<std::vector<double>> parts) {
  std::vector<double> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::vector<double> ids(const ImageSize& size) { return {size[0], size[1]}; }

}  // namespace

StableDiffusionXLPipeline::StableDiffusionXLPipeline(
    std::shared_ptr<CLIPTokenizer> tokenizer, std::shared_ptr<CLIPTextModel> text_encoder,
    std::shared_ptr<CLIPTokenizer> tokenizer_2, std::shared_ptr<CLIPTextModel> text_encoder_2,
    std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<AutoencoderKL> vae,
    std::shared_ptr<Scheduler> scheduler, bool force_zeros_for_empty_prompt)
    : tokenizer_(std::move(tokenizer)), tokenizer_2_(std::move(tokenizer_2)), text_encoder_(std::move(text_encoder)),
      text_encoder_2_(std::move(text_encoder_2)), unet_(std::move(unet)), vae_(std::move(vae)),
      scheduler_(std::move(scheduler)), force_zeros_for_empty_prompt_(force_zeros_for_empty_prompt) {
  if (!unet_ || !vae_ || !scheduler_) throw ValueError("an SDXL pipeline needs a unet, a vae and a scheduler");
  if ((tokenizer_ == nullptr) != (text_encoder_ == nullptr) ||
      (tokenizer_2_ == nullptr) != (text_encoder_2_ == nullptr)) {
    throw ValueError("each SDXL text encoder needs its tokenizer (tokenizer with text_encoder, tokenizer_2 with "
                     "text_encoder_2)");
  }
}

std::pair<at::Tensor, at::Tensor> StableDiffusionXLPipeline::encode_with_all_encoders(
    const std::vector<std::vector<std::string>>& texts, std::optional<int64_t> max_length,
    std::optional<int64_t> clip_skip, at::Tensor pooled, bool last_pass) const {
  // Ref: diffusers encode_prompt zips [prompt, prompt_2] with the encoders present, so with only
  // text_encoder_2 (the refiner) it receives `prompt`, not `prompt_2`.
  std::vector<std::pair<const CLIPTokenizer*, const CLIPTextModel*>> encoders;
  if (text_encoder_) encoders.emplace_back(tokenizer_.get(), text_encoder_.get());
  if (text_encoder_2_) encoders.emplace_back(tokenizer_2_.get(), text_encoder_2_.get());
  if (encoders.empty()) {
    throw ValueError("a prompt needs the pipeline's tokenizers and text encoders; pass prompt_embeds and "
                     "pooled_prompt_embeds instead");
  }
  const auto component_name = [&](std::size_t i) -> std::string {
    return encoders[i].second == text_encoder_.get() ? "text_encoder" : "text_encoder_2";
  };
  const std::size_t count = std::min(encoders.size(), texts.size());
  std::vector<at::Tensor> hidden;
  for (std::size_t i = 0; i < count; ++i) {
    const auto [tokenizer, encoder] = encoders[i];
    const std::string next = i + 1 < count ? component_name(i + 1) : last_pass ? component_after_prompt() : "";
    use_component(component_name(i), next);
    const int64_t length = max_length.value_or(tokenizer->model_max_length().value_or(77));
    const at::Tensor input_ids = tokenize_padded(*tokenizer, texts[i], length).to(encoder->device());
    const CLIPTextOutput out = encoder->forward(input_ids, std::nullopt, true);
    // Ref: "We are only ALWAYS interested in the pooled output of the final text encoder".
    if (!pooled.defined() && out.text_embeds) pooled = *out.text_embeds;
    // Ref: SDXL indexes from the penultimate layer: hidden_states[-(clip_skip + 2)].
    const int64_t back = clip_skip.value_or(0) + 2;
    const int64_t index = static_cast<int64_t>(out.hidden_states.size()) - back;
    if (back < 2 || index < 0) {
      throw ValueError("clip_skip=" + std::to_string(back - 2) + " is out of range for a text encoder with " +
                       std::to_string(out.hidden_states.size() - 1) + " layers");
    }
    hidden.push_back(out.hidden_states[index]);
  }
  return {at::cat(hidden, -1), pooled};
}

SDXLPromptEmbeds StableDiffusionXLPipeline::encode_prompt(const StableDiffusionXLRequest& r,
                                                          bool do_classifier_free_guidance) const {
  const c10::Device device = execution_device();
  SDXLPromptEmbeds e;
  e.prompt_embeds = r.prompt_embeds;
  e.pooled_prompt_embeds = r.pooled_prompt_embeds;
  const bool zero_out_negative_prompt = !r.negative_prompt && force_zeros_for_empty_prompt_;
  const bool encode_negative =
      do_classifier_free_guidance && !r.negative_prompt_embeds.defined() && !zero_out_negative_prompt;
  if (!e.prompt_embeds.defined()) {
    const std::vector<std::string>& prompt_2 = r.prompt_2.empty() ? r.prompt : r.prompt_2;
    std::tie(e.prompt_embeds, e.pooled_prompt_embeds) =
        encode_with_all_encoders({r.prompt, prompt_2}, std::nullopt, r.clip_skip, e.pooled_prompt_embeds,
                                 /*last_pass=*/!encode_negative);
  }
  const int64_t batch = e.prompt_embeds.size(0);
  if (!e.pooled_prompt_embeds.defined()) {
    throw ValueError("If `prompt_embeds` are provided, `pooled_prompt_embeds` also have to be passed. Make sure to "
                     "generate `pooled_prompt_embeds` from the same text encoder that was used to generate "
                     "`prompt_embeds`.");
  }

  e.negative_prompt_embeds = r.negative_prompt_embeds;
  e.negative_pooled_prompt_embeds = r.negative_pooled_prompt_embeds;
  if (do_classifier_free_guidance && !e.negative_prompt_embeds.defined() && zero_out_negative_prompt) {
    e.negative_prompt_embeds = at::zeros_like(e.prompt_embeds);
    e.negative_pooled_prompt_embeds = at::zeros_like(e.pooled_prompt_embeds);
  } else if (encode_negative) {
    const std::vector<std::string> negative =
        r.negative_prompt.value_or(std::vector<std::string>(static_cast<std::size_t>(batch), ""));
    const std::vector<std::string> negative_2 = r.negative_prompt_2.value_or(negative);
    for (const auto* list : {&negative, &negative_2}) {
      if (static_cast<int64_t>(list->size()) != batch) {
        throw ValueError("`negative_prompt` has batch size " + std::to_string(list->size()) +
                         ", but `prompt` has batch size " + std::to_string(batch) +
                         ". Please make sure that passed `negative_prompt` matches the batch size of `prompt`.");
      }
    }
    // Ref: the negative prompt is padded to the prompt embeddings' length and never uses clip_skip.
    std::tie(e.negative_prompt_embeds, e.negative_pooled_prompt_embeds) =
        encode_with_all_encoders({negative, negative_2}, e.prompt_embeds.size(1), std::nullopt,
                                 e.negative_pooled_prompt_embeds, /*last_pass=*/true);
  }
  if (do_classifier_free_guidance && !e.negative_pooled_prompt_embeds.defined()) {
    throw ValueError("If `negative_prompt_embeds` are provided, `negative_pooled_prompt_embeds` also have to be "
                     "passed. Make sure to generate `negative_pooled_prompt_embeds` from the same text encoder that "
                     "was used to generate `negative_prompt_embeds`.");
  }

  const at::ScalarType dtype = text_encoder_2_ ? text_encoder_2_->dtype() : unet_->dtype();
  const int64_t n = r.num_images_per_prompt;
  e.prompt_embeds = repeat_per_prompt(e.prompt_embeds.to(device, dtype), n);
  e.pooled_prompt_embeds = repeat_per_prompt(e.pooled_prompt_embeds.to(device), n);
  if (do_classifier_free_guidance) {
    e.negative_prompt_embeds = repeat_per_prompt(e.negative_prompt_embeds.to(device, dtype), n);
    e.negative_pooled_prompt_embeds = repeat_per_prompt(e.negative_pooled_prompt_embeds.to(device), n);
  } else {
    e.negative_prompt_embeds = at::Tensor();
    e.negative_pooled_prompt_embeds = at::Tensor();
  }
  return e;
}

int64_t StableDiffusionXLPipeline::text_encoder_projection_dim(const SDXLPromptEmbeds& embeds) const {
  return text_encoder_2_ ? text_encoder_2_->config().projection_dim : embeds.pooled_prompt_embeds.size(-1);
}

at::Tensor StableDiffusionXLPipeline::add_time_ids_tensor(const std::vector<double>& values,
                                                          int64_t text_encoder_projection_dim, at::ScalarType dtype,
                                                          const std::string& hint) const {
  const UNet2DConditionConfig& config = unet_->config();
  const int64_t passed = config.addition_time_embed_dim * static_cast<int64_t>(values.size()) +
                         text_encoder_projection_dim;
  const int64_t expected = config.projection_class_embeddings_input_dim;
  if (expected != passed) {
    throw ValueError("Model expects an added time embedding vector of length " + std::to_string(expected) +
                     ", but a vector of " + std::to_string(passed) + " was created. " + hint);
  }
  // Ref: torch.tensor([ids], dtype=dtype): each value converted once, straight to the dtype.
  return at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(dtype).reshape({1, -1});
}

TimestepWindow StableDiffusionXLPipeline::apply_denoising_end(const StableDiffusionXLRequest& r,
                                                              TimestepWindow window) const {
  return r.denoising_end ? cut_at_denoising_end(window, *scheduler_, *r.denoising_end) : window;
}

PipelineResult StableDiffusionXLPipeline::denoise(const StableDiffusionXLRequest& r, at::Tensor latents,
                                                  Conditioning cond, TimestepWindow window, StepTensors tensors,
                                                  std::vector<const LoopInput*> inputs,
                                                  const std::vector<const AfterStepHook*>& after_step) {
  const c10::Device device = execution_device();
  tensors["latents"] = std::move(latents);
  tensors["prompt_embeds"] = cond.prompt_embeds.to(device);
  tensors["add_text_embeds"] = cond.add_text_embeds.to(device);
  tensors["add_time_ids"] = cond.add_time_ids.to(device);
  const std::unique_ptr<Guider> guider = classifier_free_guidance_or_none(r.guidance_scale, r.guidance_rescale);
  const AddedConditions text_time = AddedConditions::text_time();
  inputs.insert(inputs.begin(), &text_time);
  UNetDenoiser denoiser(*unet_, "prompt_embeds", inputs);
  // 9. Denoising loop
  DenoisingLoopSpec spec = loop_spec(r, std::move(window), *scheduler_, denoiser, *guider, offload_.get());
  spec.after_step = after_step;
  const DenoisingLoopResult loop = run_denoising_loop(spec, std::move(tensors));
  PipelineResult result{loop.latents, loop.num_timesteps};
  if (!r.output_latents) {
    use_component("vae");
    result.output = decode_latents(*vae_, loop.latents, /*force_upcast=*/true);
  }
  free_components();
  return result;
}

std::vector<ModelCpuOffload::Component> StableDiffusionXLPipeline::offload_components() const {
  std::vector<ModelCpuOffload::Component> components;
  add_streamed_component(components, "text_encoder", text_encoder_);
  add_streamed_component(components, "text_encoder_2", text_encoder_2_);
  add_streamed_component(components, "unet", unet_);
  // Whole, not streamed: force_upcast casts the VAE to float32 around each use, which must see
  // every weight on the device.
  add_offload_component(components, "vae", vae_);
  return components;
}

PipelineResult StableDiffusionXLPipeline::run(const StableDiffusionXLRequest& r) {
  c10::NoGradGuard no_grad;
  const c10::Device device = execution_device();
  const int64_t vsf = vae_scale_factor();
  if (r.height % vsf != 0 || r.width % vsf != 0) {
    throw ValueError("`height` and `width` have to be divisible by " + std::to_string(vsf) + " but are " +
                     std::to_string(r.height) + " and " + std::to_string(r.width) + ".");
  }
  const bool cfg = does_classifier_free_guidance(r.guidance_scale);
  // 3. Encode input prompt
  const SDXLPromptEmbeds embeds = encode_prompt(r, cfg);
  const int64_t batch = embeds.prompt_embeds.size(0);  // already x num_images_per_prompt
  const at::ScalarType dtype = embeds.prompt_embeds.scalar_type();

  // 4. Prepare timesteps
  const int64_t num_steps = retrieve_timesteps(*scheduler_, r.num_inference_steps, device, r.timesteps, r.sigmas);

  // 5. Prepare latent variables (scaled by the scheduler's initial sigma)
  at::Tensor latents = initial_noise(r.latents, {batch, unet_->config().in_channels, r.height / vsf, r.width / vsf},
                                     r.generators, device, dtype, *scheduler_);

  // 7. Prepare added time ids & embeddings
  const ImageSize default_size{static_cast<double>(r.height), static_cast<double>(r.width)};
  const ImageSize original = r.original_size.value_or(default_size);
  const ImageSize target = r.target_size.value_or(default_size);
  const int64_t projection_dim = text_encoder_projection_dim(embeds);
  const std::string hint =
      "The model has an incorrect config. Please check `unet.config.time_embedding_type` and "
      "`text_encoder_2.config.projection_dim`.";
  Conditioning cond;
  cond.add_time_ids = add_time_ids_tensor(concat_ids({ids(original), ids(r.crops_coords_top_left), ids(target)}),
                                          projection_dim, dtype, hint);
  at::Tensor negative_time_ids = cond.add_time_ids;
  if (r.negative_original_size && r.negative_target_size) {
    negative_time_ids = add_time_ids_tensor(
        concat_ids({ids(*r.negative_original_size), ids(r.negative_crops_coords_top_left),
                    ids(*r.negative_target_size)}),
        projection_dim, dtype, hint);
  }
  cond.prompt_embeds = embeds.prompt_embeds;
  cond.add_text_embeds = embeds.pooled_prompt_embeds;
  if (cfg) {
    cond.prompt_embeds = at::cat({embeds.negative_prompt_embeds, embeds.prompt_embeds}, 0);
    cond.add_text_embeds = at::cat({embeds.negative_pooled_prompt_embeds, embeds.pooled_prompt_embeds}, 0);
    cond.add_time_ids = at::cat({negative_time_ids, cond.add_time_ids}, 0);
  }
  // Ref: diffusers repeats the [negative; positive] pair, not each half.
  cond.add_time_ids = cond.add_time_ids.repeat({batch, 1});

  // 8. Denoising loop, then the decode
  // 8.1 Apply denoising_end
  return denoise(r, latents, cond, apply_denoising_end(r, full_schedule(*scheduler_, num_steps)));
}

}  // namespace nd
