#include "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_inpaint.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "core/random.h"
#include "pipelines/after_step/inpaint_mask_blend.h"
#include "pipelines/guiders/classifier_free_guidance.h"
#include "pipelines/loop_inputs/concatenated_channels.h"

namespace nd {

StableDiffusionXLInpaintPipeline::InpaintLatents StableDiffusionXLInpaintPipeline::prepare_latents(
    const StableDiffusionXLInpaintRequest& r, const at::Tensor& timestep, int64_t batch_size, at::ScalarType dtype,
    bool return_image_latents) {
  // Ref: diffusers StableDiffusionXLInpaintPipeline.prepare_latents. Unlike SD's, a latent image
  // is always taken as the image latents, and with denoising_start (no noise added) the noise is
  // still drawn and the image latents are the start.
  const c10::Device device = execution_device();
  const int64_t factor = vae_scale_factor();
  const int64_t latent_channels = vae_->config().latent_channels;
  const bool is_strength_max = r.strength == 1.0;
  check_generators_for_batch(r.generators, batch_size);
  const std::string duplicate = "Cannot duplicate `image` to effective batch_size " + std::to_string(batch_size);
  InpaintLatents out;
  if (r.image.size(1) == latent_channels) {
    out.image_latents = repeat_to_batch(r.image.to(device, dtype), batch_size, duplicate);
  } else if (return_image_latents || (!r.latents.defined() && !is_strength_max)) {
    out.image_latents = repeat_to_batch(encode_vae_image(*vae_, r.image.to(device, dtype), r.generators, true),
                                        batch_size, duplicate);
  }
  const auto draw_noise = [&] {
    return randn_tensor({batch_size, latent_channels, r.height / factor, r.width / factor}, r.generators, device,
                        dtype);
  };
  const at::Tensor init_sigma = scheduler_->init_noise_sigma().to(device);
  if (!r.add_noise || (!r.latents.defined() && !is_strength_max)) {
    if (!out.image_latents.defined()) {
      throw ValueError("Since strength < 1. initial latents are to be initialised as a combination of Image + "
                       "Noise.However, either the image or the noise timestep has not been provided.");
    }
  }
  if (!r.latents.defined() && r.add_noise) {
    out.noise = draw_noise();
    out.latents = is_strength_max ? out.noise * init_sigma
                                  : scheduler_->add_noise(out.image_latents, out.noise, timestep);
  } else if (r.add_noise) {
    out.noise = r.latents.to(device);
    out.latents = out.noise * init_sigma;
  } else {
    out.noise = draw_noise();
    out.latents = out.image_latents;
  }
  return out;
}

PipelineResult StableDiffusionXLInpaintPipeline::run(const StableDiffusionXLInpaintRequest& r) {
  c10::NoGradGuard no_grad;
  if (!r.image.defined() || r.image.dim() != 4) throw ValueError("`image` must be a 4-d tensor [B, C, H, W]");
  if (!r.mask_image.defined() || r.mask_image.dim() != 4) {
    throw ValueError("`mask_image` must be a 4-d tensor [B, 1, H, W]");
  }
  const c10::Device device = execution_device();
  const bool cfg = does_classifier_free_guidance(r.guidance_scale);

  // 3. Encode input prompt
  const SDXLPromptEmbeds embeds = encode_prompt(r, cfg);
  const int64_t batch = embeds.prompt_embeds.size(0);  // already x num_images_per_prompt
  const at::ScalarType dtype = embeds.prompt_embeds.scalar_type();

  // 4. set timesteps: the strength cut, or the schedule below denoising_start
  const int64_t num_steps = retrieve_timesteps(*scheduler_, r.num_inference_steps, device, r.timesteps, r.sigmas);
  const TimestepWindow window = get_timesteps(*scheduler_, num_steps, r.strength, r.denoising_start);
  check_steps_after_strength(window, r.strength, /*count_steps=*/true);
  const at::Tensor latent_timestep = window.timesteps.narrow(0, 0, 1).repeat({batch});

  // 6. Prepare latent variables
  use_component("vae");
  const bool blends_after_step = unet_->config().in_channels == 4;
  const InpaintLatents latents = prepare_latents(r, latent_timestep, batch, dtype, blends_after_step);

  // 7. Prepare mask latent variables: a latent image cannot be masked.
  at::Tensor masked_image = r.masked_image_latents;
  if (!masked_image.defined() && r.image.size(1) != vae_->config().latent_channels) {
    if (r.image.sizes().slice(2) != r.mask_image.sizes().slice(2)) {
      throw ValueError("`mask_image` must have the size of `image`");
    }
    masked_image = r.image.to(device) * (r.mask_image.to(device) < 0.5);
  }
  const MaskLatents mask = prepare_mask_latents(*vae_, r.mask_image, masked_image, batch, r.height, r.width, dtype,
                                                device, r.generators, cfg, /*force_upcast=*/true);
  // 8. Check that sizes of mask, masked image and latents match
  check_inpainting_unet_channels(unet_->config().in_channels, vae_->config().latent_channels, mask);

  // 10. Prepare added time ids & embeddings (the output size is the latents')
  Conditioning cond = image_conditioning(r, embeds, latents.latents, cfg);
  StepTensors tensors{{"mask", mask.mask}};
  if (mask.masked_image_latents.defined()) tensors["masked_image_latents"] = mask.masked_image_latents;

  // 11. Denoising loop (cut at denoising_end), then the decode
  TimestepWindow loop_window = apply_denoising_end(r, window);
  if (!blends_after_step) {
    const ConcatenatedChannels mask_channels("mask"), masked_image_channels("masked_image_latents");
    return denoise(r, latents.latents, std::move(cond), std::move(loop_window), std::move(tensors),
                   {&mask_channels, &masked_image_channels});
  }
  const InpaintMaskBlend blend(latents.image_latents, latents.noise, loop_window.timesteps.cpu(), cfg);
  return denoise(r, latents.latents, std::move(cond), std::move(loop_window), std::move(tensors), {}, {&blend});
}

}  // namespace nd
