#include "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "core/random.h"
#include "pipelines/guiders/classifier_free_guidance.h"

namespace nd {

StableDiffusionXLImg2ImgPipeline::StableDiffusionXLImg2ImgPipeline(
    std::shared_ptr<CLIPTokenizer> tokenizer, std::shared_ptr<CLIPTextModel> text_encoder,
    std::shared_ptr<CLIPTokenizer> tokenizer_2, std::shared_ptr<CLIPTextModel> text_encoder_2,
    std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<AutoencoderKL> vae,
    std::shared_ptr<Scheduler> scheduler, bool force_zeros_for_empty_prompt, bool requires_aesthetics_score)
    : StableDiffusionXLPipeline(std::move(tokenizer), std::move(text_encoder), std::move(tokenizer_2),
                                std::move(text_encoder_2), std::move(unet), std::move(vae), std::move(scheduler),
                                force_zeros_for_empty_prompt),
      requires_aesthetics_score_(requires_aesthetics_score) {}

std::pair<at::Tensor, at::Tensor> StableDiffusionXLImg2ImgPipeline::get_add_time_ids(
    const StableDiffusionXLRequest& r, const ImageSize& original, const ImageSize& target,
    const ImageSize& negative_original, const ImageSize& negative_target, int64_t projection_dim,
    at::ScalarType dtype) const {
  std::vector<double> positive, negative;
  const ImageSize& crops = r.crops_coords_top_left;
  if (requires_aesthetics_score_) {
    positive = {original[0], original[1], crops[0], crops[1], r.aesthetic_score};
    negative = {negative_original[0], negative_original[1], r.negative_crops_coords_top_left[0],
                r.negative_crops_coords_top_left[1], r.negative_aesthetic_score};
  } else {
    // Ref: diffusers builds the negative ids with the positive crops_coords_top_left here.
    positive = {original[0], original[1], crops[0], crops[1], target[0], target[1]};
    negative = {negative_original[0], negative_original[1], crops[0], crops[1], negative_target[0], negative_target[1]};
  }
  // Ref: the three messages of diffusers' _get_add_time_ids: one id too few or too many means
  // requires_aesthetics_score does not fit the UNet.
  const int64_t time_dim = unet_->config().addition_time_embed_dim;
  const int64_t expected = unet_->config().projection_class_embeddings_input_dim;
  const int64_t passed = time_dim * static_cast<int64_t>(positive.size()) + projection_dim;
  std::string hint =
      "The model has an incorrect config. Please check `unet.config.time_embedding_type` and "
      "`text_encoder_2.config.projection_dim`.";
  if (expected - passed == time_dim) {
    hint = "Please make sure to enable `requires_aesthetics_score` with "
           "`pipe.register_to_config(requires_aesthetics_score=True)` to make sure `aesthetic_score` " +
           std::to_string(r.aesthetic_score) + " and `negative_aesthetic_score` " +
           std::to_string(r.negative_aesthetic_score) + " is correctly used by the model.";
  } else if (passed - expected == time_dim) {
    hint = "Please make sure to disable `requires_aesthetics_score` with "
           "`pipe.register_to_config(requires_aesthetics_score=False)` to make sure `target_size` is correctly "
           "used by the model.";
  }
  return {add_time_ids_tensor(positive, projection_dim, dtype, hint),
          add_time_ids_tensor(negative, projection_dim, dtype, hint)};
}

PipelineResult StableDiffusionXLImg2ImgPipeline::run(const StableDiffusionXLRequest& r) {
  c10::NoGradGuard no_grad;
  if (!r.image.defined() || r.image.dim() != 4) throw ValueError("`image` must be a 4-d tensor [B, C, H, W]");
  const c10::Device device = execution_device();
  const bool cfg = does_classifier_free_guidance(r.guidance_scale);

  // 3. Encode input prompt
  const SDXLPromptEmbeds embeds = encode_prompt(r, cfg);
  const int64_t batch = embeds.prompt_embeds.size(0);  // already x num_images_per_prompt
  const at::ScalarType dtype = embeds.prompt_embeds.scalar_type();

  // 5. Prepare timesteps: the strength cut, or the schedule below denoising_start
  const int64_t num_steps = retrieve_timesteps(*scheduler_, r.num_inference_steps, device, r.timesteps, r.sigmas);
  const TimestepWindow window = get_timesteps(*scheduler_, num_steps, r.strength, r.denoising_start);
  check_steps_after_strength(window, r.strength);

  // 6. Prepare latent variables
  at::Tensor latents = r.latents;
  if (!latents.defined()) {
    use_component("vae");
    latents = encode_image_latents(*vae_, r.image, batch, dtype, device, r.generators, /*force_upcast=*/true);
    if (r.add_noise) {
      const at::Tensor noise = randn_tensor(latents.sizes(), r.generators, device, dtype);
      latents = scheduler_->add_noise(latents, noise, window.timesteps.narrow(0, 0, 1).repeat({batch}));
    }
  }

  // 8. Prepare added time ids & embeddings
  Conditioning cond = image_conditioning(r, embeds, latents, cfg);
  // 9. Denoising loop (8.1: cut at denoising_end), then the decode
  return denoise(r, latents, std::move(cond), apply_denoising_end(r, window));
}

StableDiffusionXLPipeline::Conditioning StableDiffusionXLImg2ImgPipeline::image_conditioning(
    const StableDiffusionXLRequest& r, const SDXLPromptEmbeds& embeds, const at::Tensor& latents, bool cfg) const {
  const int64_t batch = embeds.prompt_embeds.size(0);
  const at::ScalarType dtype = embeds.prompt_embeds.scalar_type();
  const int64_t vsf = vae_scale_factor();
  const ImageSize size{static_cast<double>(latents.size(-2) * vsf), static_cast<double>(latents.size(-1) * vsf)};
  const ImageSize original = r.original_size.value_or(size);
  const ImageSize target = r.target_size.value_or(size);
  auto [add_time_ids, add_neg_time_ids] =
      get_add_time_ids(r, original, target, r.negative_original_size.value_or(original),
                       r.negative_target_size.value_or(target), text_encoder_projection_dim(embeds), dtype);
  Conditioning cond;
  cond.prompt_embeds = embeds.prompt_embeds;
  cond.add_text_embeds = embeds.pooled_prompt_embeds;
  cond.add_time_ids = add_time_ids.repeat({batch, 1});
  if (cfg) {
    cond.prompt_embeds = at::cat({embeds.negative_prompt_embeds, embeds.prompt_embeds}, 0);
    cond.add_text_embeds = at::cat({embeds.negative_pooled_prompt_embeds, embeds.pooled_prompt_embeds}, 0);
    cond.add_time_ids = at::cat({add_neg_time_ids.repeat({batch, 1}), cond.add_time_ids}, 0);
  }
  return cond;
}

}  // namespace nd
