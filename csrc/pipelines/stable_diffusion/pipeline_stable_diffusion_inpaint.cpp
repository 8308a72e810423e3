#include "pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "core/random.h"
#include "pipelines/after_step/inpaint_mask_blend.h"
#include "pipelines/guiders/classifier_free_guidance.h"
#include "pipelines/loop_inputs/concatenated_channels.h"

namespace nd {

namespace {

void check_image_and_mask(const StableDiffusionInpaintRequest& r) {
  if (!r.image.defined() || r.image.dim() != 4) throw ValueError("`image` must be a 4-d tensor [B, C, H, W]");
  if (!r.mask_image.defined() || r.mask_image.dim() != 4) {
    throw ValueError("`mask_image` must be a 4-d tensor [B, 1, H, W]");
  }
  if (r.mask_image.size(2) != r.height || r.mask_image.size(3) != r.width) {
    throw ValueError("`mask_image` of size " + std::to_string(r.mask_image.size(3)) + "x" +
                     std::to_string(r.mask_image.size(2)) + " does not match the requested size " +
                     std::to_string(r.width) + "x" + std::to_string(r.height));
  }
}

}  // namespace

StableDiffusionInpaintPipeline::InpaintLatents StableDiffusionInpaintPipeline::prepare_latents(
    const StableDiffusionInpaintRequest& r, const at::Tensor& timestep, int64_t batch_size, at::ScalarType dtype,
    bool is_strength_max, bool return_image_latents) {
  // Ref: diffusers StableDiffusionInpaintPipeline.prepare_latents: the image is encoded (with the
  // generators) before the noise is drawn.
  const c10::Device device = execution_device();
  const int64_t factor = vae_->config().scale_factor();
  const int64_t latent_channels = vae_->config().latent_channels;
  check_generators_for_batch(r.generators, batch_size);
  InpaintLatents out;
  if (return_image_latents || (!r.latents.defined() && !is_strength_max)) {
    const at::Tensor image = r.image.to(device, dtype);
    const at::Tensor image_latents =
        image.size(1) == latent_channels ? image : encode_vae_image(*vae_, image, r.generators, false);
    out.image_latents = repeat_to_batch(image_latents, batch_size,
                                        "Cannot duplicate `image` of batch size " +
                                            std::to_string(image_latents.size(0)) + " to effective batch_size " +
                                            std::to_string(batch_size) + " ");
  }
  const at::Tensor init_sigma = scheduler_->init_noise_sigma().to(device);
  if (r.latents.defined()) {
    out.noise = r.latents.to(device);
    out.latents = out.noise * init_sigma;
    return out;
  }
  out.noise = randn_tensor({batch_size, latent_channels, r.height / factor, r.width / factor}, r.generators, device,
                           dtype);
  // At strength 1 the start is pure noise, not the image noised to the first timestep.
  out.latents = is_strength_max ? out.noise * init_sigma
                                : scheduler_->add_noise(out.image_latents, out.noise, timestep);
  return out;
}

StableDiffusionInpaintPipeline::PreparedInpainting StableDiffusionInpaintPipeline::prepare_inpainting(
    const StableDiffusionInpaintRequest& r, bool counts_steps) {
  check_image_and_mask(r);
  const c10::Device device = execution_device();
  // 3. Encode input prompt
  PreparedInpainting prepared{encode_prompt_tensors(r), {}};
  PreparedCall& call = prepared.call;
  const at::ScalarType dtype = call.tensors["prompt_embeds"].scalar_type();
  // 4. set timesteps, then cut the schedule by strength
  const int64_t num_steps = retrieve_timesteps(*scheduler_, r.num_inference_steps, device, r.timesteps, r.sigmas);
  call.window = get_timesteps(*scheduler_, num_steps, r.strength, std::nullopt);
  check_steps_after_strength(call.window, r.strength, counts_steps);
  const at::Tensor latent_timestep = call.window.timesteps.narrow(0, 0, 1).repeat({call.batch_size});

  // 6. Prepare latent variables
  use_component("vae");
  prepared.latents = prepare_latents(r, latent_timestep, call.batch_size, dtype, /*is_strength_max=*/r.strength == 1.0,
                                     /*return_image_latents=*/unet_->config().in_channels == 4);
  call.tensors["latents"] = prepared.latents.latents;

  // 7. Prepare mask latent variables: masked pixels are 0, mid-grey in [-1, 1].
  if (!r.masked_image_latents.defined() && (r.image.size(2) != r.height || r.image.size(3) != r.width)) {
    throw ValueError("`image` of size " + std::to_string(r.image.size(3)) + "x" + std::to_string(r.image.size(2)) +
                     " cannot be masked by a " + std::to_string(r.width) + "x" + std::to_string(r.height) +
                     " `mask_image`; pass `masked_image_latents` with latent images");
  }
  const at::Tensor masked_image = r.masked_image_latents.defined()
                                      ? r.masked_image_latents
                                      : r.image.to(device) * (r.mask_image.to(device) < 0.5);
  const MaskLatents mask =
      prepare_mask_latents(*vae_, r.mask_image, masked_image, call.batch_size, r.height, r.width, dtype, device,
                           r.generators, does_classifier_free_guidance(r.guidance_scale), false);
  // 8. Check that sizes of mask, masked image and latents match
  check_inpainting_unet_channels(unet_->config().in_channels, vae_->config().latent_channels, mask);
  call.tensors["mask"] = mask.mask;
  call.tensors["masked_image_latents"] = mask.masked_image_latents;
  return prepared;
}

PipelineResult StableDiffusionInpaintPipeline::denoise_inpainting(const StableDiffusionInpaintRequest& r,
                                                                  PreparedInpainting prepared,
                                                                  std::vector<const LoopInput*> inputs) {
  // The 9-channel UNet's input is [latents, mask, masked_image_latents].
  if (unet_->config().in_channels == 9) {
    const ConcatenatedChannels mask_channels("mask"), masked_image_channels("masked_image_latents");
    inputs.push_back(&mask_channels);
    inputs.push_back(&masked_image_channels);
    return denoise(r, std::move(prepared.call), inputs);
  }
  const InpaintMaskBlend blend(prepared.latents.image_latents, prepared.latents.noise,
                               prepared.call.window.timesteps.cpu(), does_classifier_free_guidance(r.guidance_scale));
  return denoise(r, std::move(prepared.call), inputs, {&blend});
}

PipelineResult StableDiffusionInpaintPipeline::run(const StableDiffusionInpaintRequest& r) {
  c10::NoGradGuard no_grad;
  return denoise_inpainting(r, prepare_inpainting(r, /*counts_steps=*/true));
}

}  // namespace nd
