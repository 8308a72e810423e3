#include "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "core/random.h"

namespace nd {

at::Tensor StableDiffusionImg2ImgPipeline::prepare_latents(const at::Tensor& image, const at::Tensor& timestep,
                                                           int64_t batch_size, at::ScalarType dtype,
                                                           const std::vector<at::Generator>& generators) {
  // Ref: diffusers StableDiffusionImg2ImgPipeline.prepare_latents (no VAE upcast in SD 1.x).
  const c10::Device device = execution_device();
  use_component("vae");
  const at::Tensor init_latents =
      encode_image_latents(*vae_, image, batch_size, dtype, device, generators, /*force_upcast=*/false);
  const at::Tensor noise = randn_tensor(init_latents.sizes(), generators, device, dtype);
  return scheduler_->add_noise(init_latents, noise, timestep.reshape({1}).expand({init_latents.size(0)}));
}

PreparedCall StableDiffusionImg2ImgPipeline::prepare_image_to_image(const StableDiffusionImg2ImgRequest& r) {
  if (!r.image.defined() || r.image.dim() != 4) throw ValueError("`image` must be a 4-d tensor [B, C, H, W]");
  const c10::Device device = execution_device();
  // 3. Encode input prompt
  PreparedCall call = encode_prompt_tensors(r);
  // 5. set timesteps, then cut the schedule by strength
  const int64_t num_steps = retrieve_timesteps(*scheduler_, r.num_inference_steps, device, r.timesteps, r.sigmas);
  call.window = get_timesteps(*scheduler_, num_steps, r.strength, std::nullopt);
  const at::Tensor& timesteps = call.window.timesteps;
  check_steps_after_strength(call.window, r.strength);
  // 6. Prepare latent variables
  call.tensors["latents"] =
      r.latents.defined() ? r.latents.to(device)
                          : prepare_latents(r.image, timesteps[0], call.batch_size,
                                            call.tensors["prompt_embeds"].scalar_type(), r.generators);
  return call;
}

PipelineResult StableDiffusionImg2ImgPipeline::run(const StableDiffusionImg2ImgRequest& r) {
  c10::NoGradGuard no_grad;
  return denoise(r, prepare_image_to_image(r));
}

}  // namespace nd
