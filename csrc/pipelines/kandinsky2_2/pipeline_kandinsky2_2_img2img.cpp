#include "pipelines/kandinsky2_2/pipeline_kandinsky2_2_img2img.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "core/random.h"
#include "pipelines/denoisers/unet_denoiser.h"
#include "pipelines/guiders/learned_variance_guidance.h"
#include "pipelines/loop_inputs/added_conditions.h"

namespace nd {

KandinskyV22Img2ImgPipeline::KandinskyV22Img2ImgPipeline(std::shared_ptr<UNet2DConditionModel> unet,
                                                         std::shared_ptr<Scheduler> scheduler,
                                                         std::shared_ptr<VQModel> movq)
    : unet_(std::move(unet)), scheduler_(std::move(scheduler)), movq_(std::move(movq)) {
  if (!unet_ || !scheduler_ || !movq_) {
    throw ValueError("KandinskyV22Img2ImgPipeline needs a unet, a scheduler and a movq");
  }
}

bool KandinskyV22Img2ImgPipeline::scheduler_learns_variance() const {
  // Ref: diffusers __call__: hasattr(scheduler.config, "variance_type") and it is learned/learned_range.
  const io::Json config = scheduler_->config_json();
  const auto it = config.find("variance_type");
  if (it == config.end() || !it->is_string()) return false;
  const std::string type = it->get<std::string>();
  return type == "learned" || type == "learned_range";
}

TimestepWindow KandinskyV22Img2ImgPipeline::get_timesteps(int64_t num_inference_steps, double strength) const {
  // int() truncates the float product, as Python's.
  const int64_t init_timestep =
      std::min(static_cast<int64_t>(static_cast<double>(num_inference_steps) * strength), num_inference_steps);
  const int64_t t_start = std::max<int64_t>(num_inference_steps - init_timestep, 0);
  const at::Tensor all = scheduler_->timesteps();
  const int64_t first = std::min<int64_t>(t_start, all.size(0));
  // Unlike the SD img2img pipeline, diffusers neither multiplies t_start by the scheduler's order
  // nor calls set_begin_index here.
  return {all.narrow(0, first, all.size(0) - first), num_inference_steps - t_start, 0};
}

at::Tensor KandinskyV22Img2ImgPipeline::prepare_latents(const at::Tensor& image_latents, const at::Tensor& timestep,
                                                        at::ScalarType dtype,
                                                        const std::vector<at::Generator>& generators) const {
  // Ref: diffusers KandinskyV22Img2ImgPipeline.prepare_latents: the MoVQ latents arrive with 4
  // channels, so they are used as they are (no scaling_factor) and noised to `timestep`.
  const at::Tensor init_latents = image_latents.to(execution_device(), dtype);
  if (init_latents.size(1) != 4) {
    throw ValueError("KandinskyV22Img2ImgPipeline needs a movq whose latents have 4 channels, got " +
                     std::to_string(init_latents.size(1)));
  }
  if (generators.size() > 1 && static_cast<int64_t>(generators.size()) != init_latents.size(0)) {
    throw ValueError("You have passed a list of generators of length " + std::to_string(generators.size()) +
                     ", but requested an effective batch size of " + std::to_string(init_latents.size(0)) +
                     ". Make sure the batch size matches the length of the generators.");
  }
  const at::Tensor noise = randn_tensor(init_latents.sizes(), generators, execution_device(), dtype);
  return scheduler_->add_noise(init_latents, noise, timestep);
}

PipelineResult KandinskyV22Img2ImgPipeline::run(const KandinskyV22Img2ImgRequest& r) {
  c10::NoGradGuard no_grad;
  if (!r.image_embeds.defined() || r.image_embeds.dim() != 2) {
    throw ValueError("`image_embeds` must be a 2-d tensor [batch, embedding_dim]");
  }
  if (!r.image.defined() || r.image.dim() != 4) throw ValueError("`image` must be a 4-d tensor [B, C, H, W]");
  if (!(r.strength >= 0)) {
    throw ValueError("The value of strength should in [0.0, 1.0] but is " + std::to_string(r.strength));
  }
  if (r.num_inference_steps < 1) throw ValueError("`num_inference_steps` must be a positive integer");
  if (r.num_images_per_prompt < 1) throw ValueError("`num_images_per_prompt` must be a positive integer");
  const c10::Device device = execution_device();
  const bool cfg = r.guidance_scale > 1.0;
  const int64_t n = r.num_images_per_prompt;

  // Ref: diffusers __call__: with guidance the embeddings are repeated per image and stacked
  // [negative; positive] in the UNet's dtype; without, they are used as given.
  at::Tensor image_embeds = r.image_embeds;
  at::Tensor negative_image_embeds = r.negative_image_embeds;
  const int64_t batch_size = r.image_embeds.size(0);
  if (cfg) {
    if (!r.negative_image_embeds.defined() || r.negative_image_embeds.sizes() != r.image_embeds.sizes()) {
      throw ValueError("`negative_image_embeds` must have the shape of `image_embeds` " +
                       c10::str(r.image_embeds.sizes()) + " for classifier-free guidance");
    }
    image_embeds = r.image_embeds.repeat_interleave(n, 0);
    negative_image_embeds = r.negative_image_embeds.repeat_interleave(n, 0);
    image_embeds =
        at::cat({negative_image_embeds.to(image_embeds.scalar_type()), image_embeds}, 0).to(device, unet_->dtype());
  }
  StepTensors tensors{{"image_embeds", image_embeds}};
  if (negative_image_embeds.defined()) tensors["negative_image_embeds"] = negative_image_embeds;
  const at::ScalarType dtype = image_embeds.scalar_type();

  // Encode the image; the latents are repeated per image, not to the embeddings' batch.
  const at::Tensor image = r.image.to(device, dtype);
  use_component("movq", "unet");
  at::Tensor latents = movq_->encode(image).repeat_interleave(n, 0);
  const int64_t model_batch = cfg ? 2 * latents.size(0) : latents.size(0);
  if (model_batch != image_embeds.size(0)) {
    throw ValueError("`image` gives " + std::to_string(latents.size(0)) + " latents (batch " +
                     std::to_string(r.image.size(0)) + " x num_images_per_prompt " + std::to_string(n) +
                     ") but `image_embeds` has batch " + std::to_string(batch_size) +
                     (cfg ? "" : " (without guidance the embeddings are not repeated per image)") +
                     "; pass one image per image embedding");
  }

  // 5. set timesteps, then cut the schedule by strength
  scheduler_->set_timesteps(r.num_inference_steps, device, {}, {});
  const TimestepWindow window = get_timesteps(r.num_inference_steps, r.strength);
  if (window.timesteps.size(0) == 0) {
    throw ValueError("After adjusting the num_inference_steps by strength parameter: " + std::to_string(r.strength) +
                     ", the number of pipeline steps is " + std::to_string(window.num_inference_steps) +
                     " which is < 1 and not appropriate for this pipeline.");
  }
  const at::Tensor latent_timestep = window.timesteps.narrow(0, 0, 1).repeat({batch_size * n});

  // 6. Prepare latent variables
  tensors["latents"] = prepare_latents(latents, latent_timestep, dtype, r.generators);

  // 7. Denoising loop: the image embeddings as the UNet's added condition
  const LearnedVarianceGuidance guider(r.guidance_scale, latents.size(1), scheduler_learns_variance());
  const AddedConditions image_embeddings = AddedConditions::image();
  UNetDenoiser denoiser(*unet_, /*encoder_states=*/"", {&image_embeddings});
  DenoisingLoopSpec spec = loop_spec(r, window, *scheduler_, denoiser, guider, offload_.get());
  spec.scales_model_input = false;
  spec.progress_per_timestep = true;
  const DenoisingLoopResult loop = run_denoising_loop(spec, std::move(tensors));
  PipelineResult result{loop.latents, loop.num_timesteps};
  // 8. Decode without the codebook lookup.
  if (!r.output_latents) {
    use_component("movq");
    result.output = movq_->decode(loop.latents, /*force_not_quantize=*/true).first;
  }
  free_components();
  return result;
}

std::vector<ModelCpuOffload::Component> KandinskyV22Img2ImgPipeline::offload_components() const {
  std::vector<ModelCpuOffload::Component> components;
  add_streamed_component(components, "unet", unet_);
  add_offload_component(components, "movq", movq_);
  return components;
}

}  // namespace nd
