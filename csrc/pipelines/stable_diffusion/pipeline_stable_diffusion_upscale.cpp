#include "pipelines/stable_diffusion/pipeline_stable_diffusion_upscale.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "core/random.h"
#include "pipelines/guiders/classifier_free_guidance.h"
#include "pipelines/loop_inputs/added_conditions.h"
#include "pipelines/loop_inputs/concatenated_channels.h"

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

at::Tensor StableDiffusionUpscalePipeline::noised_image(const StableDiffusionUpscaleRequest& r,
                                                        int64_t batch_multiplier, at::ScalarType dtype) const {
  const c10::Device device = execution_device();
  const at::Tensor image = r.image.to(device, dtype);
  const at::Tensor noise_level = at::full({1}, r.noise_level, at::TensorOptions().dtype(at::kLong).device(device));
  const at::Tensor noise = randn_tensor(image.sizes(), r.generators, device, dtype);
  const at::Tensor noised = low_res_scheduler_->add_noise(image, noise, noise_level);
  // Ref: diffusers: torch.cat([image] * batch_multiplier * num_images_per_prompt), whole-batch copies.
  return noised.repeat({batch_multiplier * r.num_images_per_prompt, 1, 1, 1});
}

PipelineResult StableDiffusionUpscalePipeline::run(const StableDiffusionUpscaleRequest& r) {
  c10::NoGradGuard no_grad;
  if (!r.image.defined() || r.image.dim() != 4) throw ValueError("`image` must be a 4-d tensor [B, C, H, W]");
  const c10::Device device = execution_device();
  const int64_t batch_multiplier = does_classifier_free_guidance(r.guidance_scale) ? 2 : 1;

  // 3. Encode input prompt
  PreparedCall call = encode_prompt_tensors(r);
  const at::ScalarType dtype = call.tensors["prompt_embeds"].scalar_type();

  // 4. set timesteps
  const int64_t num_steps = retrieve_timesteps(*scheduler_, r.num_inference_steps, device, r.timesteps, r.sigmas);
  call.window = full_schedule(*scheduler_, num_steps);

  // 5. Add noise to image: the low-resolution scheduler noises it to noise_level.
  const at::Tensor image = noised_image(r, batch_multiplier, dtype);

  // 6. Prepare latent variables, at the low-resolution image's size
  const int64_t latent_channels = vae_->config().latent_channels;
  if (latent_channels + image.size(1) != unet_->config().in_channels) {
    throw ValueError("Incorrect configuration settings! The config of `pipeline.unet` expects " +
                     std::to_string(unet_->config().in_channels) + " but received `num_channels_latents`: " +
                     std::to_string(latent_channels) + " + `num_channels_image`: " + std::to_string(image.size(1)) +
                     "  = " + std::to_string(latent_channels + image.size(1)) +
                     ". Please verify the config of `pipeline.unet` or your `image` input.");
  }
  if (image.size(0) != batch_multiplier * call.batch_size) {
    throw ValueError("`prompt` has batch size " + std::to_string(call.batch_size / r.num_images_per_prompt) +
                     " and `image` has batch size " + std::to_string(r.image.size(0)) +
                     ". Please make sure that passed `prompt` matches the batch size of `image`.");
  }
  call.tensors["latents"] = initial_noise(r.latents, {call.batch_size, latent_channels, image.size(2), image.size(3)},
                                          r.generators, device, dtype, *scheduler_);

  // 9. Denoising loop, the image and its noise level in every UNet call, then the decode
  const ConcatenatedChannels low_res_image(image);
  const AddedConditions noise_level = AddedConditions::class_labels(
      at::full({image.size(0)}, r.noise_level, at::TensorOptions().dtype(at::kLong).device(device)));
  call.upcast_vae = true;
  return denoise(r, std::move(call), {&low_res_image, &noise_level});
}

}  // namespace nd
