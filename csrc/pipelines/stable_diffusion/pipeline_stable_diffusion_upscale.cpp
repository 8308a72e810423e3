#include "pipelines/stable_diffusion/pipeline_stable_diffusion_upscale.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "core/random.h"

namespace nd {

StableDiffusionUpscalePipeline::StableDiffusionUpscalePipeline(std::shared_ptr<CLIPTokenizer> tokenizer,
                                                               std::shared_ptr<CLIPTextModel> text_encoder,
                                                               std::shared_ptr<UNet2DConditionModel> unet,
                                                               std::shared_ptr<AutoencoderKL> vae,
                                                               std::shared_ptr<Scheduler> low_res_scheduler,
                                                               std::shared_ptr<Scheduler> scheduler)
    : StableDiffusionPipeline(std::move(tokenizer), std::move(text_encoder), std::move(unet), std::move(vae),
                              std::move(scheduler)),
      low_res_scheduler_(std::move(low_res_scheduler)) {
  if (!low_res_scheduler_) throw ValueError("the upscale pipeline needs a low_res_scheduler");
}

at::Tensor StableDiffusionUpscalePipeline::run(const StableDiffusionUpscaleRequest& r) {
  c10::NoGradGuard no_grad;
  if (!r.image.defined() || r.image.dim() != 4) throw ValueError("`image` must be a 4-d tensor [B, C, H, W]");
  const c10::Device device = execution_device();
  const bool cfg = r.guidance_scale > 1.0;

  // 3. Encode input prompt
  auto [prompt_embeds, negative_prompt_embeds] = encode_prompt(r, cfg);
  const int64_t batch_size = prompt_embeds.size(0);  // already x num_images_per_prompt
  const at::ScalarType dtype = prompt_embeds.scalar_type();

  // 5. set timesteps
  const int64_t num_steps = retrieve_timesteps(*scheduler_, r.num_inference_steps, device, r.timesteps, r.sigmas);

  // 5. Add noise to image: the low-resolution scheduler noises it to noise_level.
  at::Tensor image = r.image.to(device, dtype);
  const at::Tensor noise_level = at::full({1}, r.noise_level, at::TensorOptions().dtype(at::kLong).device(device));
  const at::Tensor noise = randn_tensor(image.sizes(), r.generators, device, dtype);
  image = low_res_scheduler_->add_noise(image, noise, noise_level);
  // Ref: diffusers: torch.cat([image] * batch_multiplier * num_images_per_prompt), whole-batch copies.
  image = image.repeat({(cfg ? 2 : 1) * r.num_images_per_prompt, 1, 1, 1});
  const at::Tensor class_labels = noise_level.expand({image.size(0)}).contiguous();

  // 6. Prepare latent variables, at the low-resolution image's size
  const int64_t latent_channels = vae_->config().latent_channels;
  if (latent_channels + image.size(1) != unet_->config().in_channels) {
    throw ValueError("Incorrect configuration settings! The config of `pipeline.unet` expects " +
                     std::to_string(unet_->config().in_channels) + " but received `num_channels_latents`: " +
                     std::to_string(latent_channels) + " + `num_channels_image`: " + std::to_string(image.size(1)) +
                     "  = " + std::to_string(latent_channels + image.size(1)) +
                     ". Please verify the config of `pipeline.unet` or your `image` input.");
  }
  if (image.size(0) != (cfg ? 2 : 1) * batch_size) {
    throw ValueError("`prompt` has batch size " + std::to_string(batch_size / r.num_images_per_prompt) +
                     " and `image` has batch size " + std::to_string(r.image.size(0)) +
                     ". Please make sure that passed `prompt` matches the batch size of `image`.");
  }
  at::Tensor latents =
      r.latents.defined()
          ? r.latents.to(device)
          : randn_tensor({batch_size, latent_channels, image.size(2), image.size(3)}, r.generators, device, dtype);
  latents = latents * scheduler_->init_noise_sigma().to(latents.device());

  // 9. Denoising loop, then the decode
  StepTensors tensors{{"latents", latents},
                      {"prompt_embeds", cfg ? at::cat({negative_prompt_embeds, prompt_embeds}, 0) : prompt_embeds}};
  if (cfg) tensors["negative_prompt_embeds"] = negative_prompt_embeds;
  LoopConditioning conditioning;
  conditioning.image = image;
  conditioning.class_labels = class_labels;
  conditioning.upcast_vae = true;
  return denoise(r, std::move(tensors), TimestepWindow{scheduler_->timesteps(), num_steps}, conditioning);
}

}  // namespace nd
