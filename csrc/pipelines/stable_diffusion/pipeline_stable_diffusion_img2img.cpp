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

at::Tensor StableDiffusionImg2ImgPipeline::run(const StableDiffusionImg2ImgRequest& r) {
  return generate(r, nullptr, nullptr);
}

at::Tensor StableDiffusionImg2ImgPipeline::generate(const StableDiffusionImg2ImgRequest& r,
                                                    const ControlNetModel* controlnet,
                                                    const ControlNetRequest* control) {
  c10::NoGradGuard no_grad;
  if (r.strength < 0 || r.strength > 1) {
    throw ValueError("The value of strength should in [0.0, 1.0] but is " + std::to_string(r.strength));
  }
  if (!r.image.defined() || r.image.dim() != 4) throw ValueError("`image` must be a 4-d tensor [B, C, H, W]");
  const c10::Device device = execution_device();
  // Ref: diffusers: guidance applies when guidance_scale > 1 (and the UNet has no time_cond_proj).
  const bool cfg = r.guidance_scale > 1.0;

  // 3. Encode input prompt
  auto [prompt_embeds, negative_prompt_embeds] = encode_prompt(r, cfg);
  const int64_t batch_size = prompt_embeds.size(0);  // already × num_images_per_prompt

  // 5. set timesteps, then cut the schedule by strength
  const int64_t num_steps = retrieve_timesteps(*scheduler_, r.num_inference_steps, device, r.timesteps, r.sigmas);
  const TimestepWindow window = get_timesteps(*scheduler_, num_steps, r.strength, std::nullopt);
  const at::Tensor& timesteps = window.timesteps;
  if (timesteps.size(0) == 0) {
    throw ValueError("After adjusting the num_inference_steps by strength parameter: " + std::to_string(r.strength) +
                     ", the number of pipelinesteps is " + std::to_string(window.num_inference_steps) +
                     " which is < 1 and not appropriate for this pipeline.");
  }

  // 6. Prepare latent variables
  StepTensors tensors{
      {"latents", r.latents.defined() ? r.latents.to(device)
                                      : prepare_latents(r.image, timesteps[0], batch_size, prompt_embeds.scalar_type(),
                                                        r.generators)},
      {"prompt_embeds", cfg ? at::cat({negative_prompt_embeds, prompt_embeds}, 0) : prompt_embeds}};
  if (cfg) tensors["negative_prompt_embeds"] = negative_prompt_embeds;

  // 7.1 The ControlNet's conditioning image and the steps it guides
  std::optional<ControlNetGuidance> guidance;
  if (controlnet) {
    guidance.emplace(*controlnet, *control, batch_size, r.num_images_per_prompt, cfg, timesteps.size(0), device,
                     "control_image");
    tensors["control_image"] = guidance->image();
  }

  // 8. Denoising loop, then the decode
  LoopConditioning conditioning;
  conditioning.control = guidance ? &*guidance : nullptr;
  return denoise(r, std::move(tensors), window, conditioning);
}

}  // namespace nd
