#include "pipelines/kandinsky2_2/pipeline_kandinsky2_2_inpainting.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "pipelines/denoisers/unet_denoiser.h"
#include "pipelines/guiders/learned_variance_guidance.h"
#include "pipelines/loop_inputs/added_conditions.h"
#include "pipelines/loop_inputs/concatenated_channels.h"

namespace nd {
namespace {

// Ref: diffusers downscale_height_and_width: the latent size, rounding up to whole multiples of
// scale_factor**2 pixels.
int64_t downscale(int64_t size, int64_t scale_factor) {
  const int64_t block = scale_factor * scale_factor;
  return (size / block + (size % block != 0 ? 1 : 0)) * scale_factor;
}

// Ref: diffusers KandinskyV22InpaintPipeline.__call__, after scheduler.step: the first image's
// MoVQ latents, noised to the next timestep with the call's initial noise (clean after the last
// step), replace the latents where the first keep-mask of "mask_image" is 1. Unlike SD's
// InpaintMaskBlend, it runs whatever the UNet's channels and blends with mask_image[:1], the keep-mask.
class KandinskyInpaintBlend : public AfterStepHook {
 public:
  // `image_latents`: [1, C, h, w]; `noise`: [B, C, h, w]; `timesteps`: the loop's, on the host.
  KandinskyInpaintBlend(at::Tensor image_latents, at::Tensor noise, at::Tensor timesteps)
      : image_latents_(std::move(image_latents)), noise_(std::move(noise)), timesteps_(std::move(timesteps)) {}

  at::Tensor after_step(const LoopStep& step, const at::Tensor& latents) const override {
    const at::Tensor init_mask = step.tensors.at("mask_image").narrow(0, 0, 1);
    at::Tensor init_latents_proper = image_latents_;
    if (step.index + 1 < timesteps_.size(0)) {
      init_latents_proper = step.scheduler.add_noise(image_latents_, noise_, timesteps_.narrow(0, step.index + 1, 1));
    }
    return init_mask * init_latents_proper + (1 - init_mask) * latents;
  }

 private:
  at::Tensor image_latents_;
  at::Tensor noise_;
  at::Tensor timesteps_;
};

}  // namespace

at::Tensor prepare_kandinsky_inpaint_mask(const at::Tensor& mask) {
  const int64_t h = mask.size(2), w = mask.size(3);
  // 1 where old_mask[0][i][j] != 1 (NaN included, as diffusers' == 1 test), padded by one pixel of 0
  // so that the image's edges have no neighbours outside it.
  const at::Tensor source = at::constant_pad_nd(mask.narrow(1, 0, 1).ne(1).to(at::kFloat), {1, 1, 1, 1}, 0);
  // Pixel (p, q) is zeroed by a source at (p + a, q + b) for each offset below: the source (i, j)
  // zeroes (i - 1, j), (i, j - 1), (i - 1, j - 1), (i + 1, j), (i, j + 1), (i + 1, j + 1).
  static constexpr int64_t kOffsets[6][2] = {{1, 0}, {0, 1}, {1, 1}, {-1, 0}, {0, -1}, {-1, -1}};
  at::Tensor zeroed = at::zeros({mask.size(0), 1, h, w}, source.options());
  for (const auto& offset : kOffsets) {
    zeroed = zeroed + source.narrow(2, 1 + offset[0], h).narrow(3, 1 + offset[1], w);
  }
  return mask.masked_fill(zeroed.gt(0), 0);
}

KandinskyV22InpaintPipeline::KandinskyV22InpaintPipeline(std::shared_ptr<UNet2DConditionModel> unet,
                                                         std::shared_ptr<Scheduler> scheduler,
                                                         std::shared_ptr<VQModel> movq)
    : unet_(std::move(unet)), scheduler_(std::move(scheduler)), movq_(std::move(movq)) {
  if (!unet_ || !scheduler_ || !movq_) {
    throw ValueError("KandinskyV22InpaintPipeline needs a unet, a scheduler and a movq");
  }
}

bool KandinskyV22InpaintPipeline::scheduler_learns_variance() const {
  // Ref: diffusers __call__: hasattr(scheduler.config, "variance_type") and it is learned/learned_range.
  const io::Json config = scheduler_->config_json();
  const auto it = config.find("variance_type");
  if (it == config.end() || !it->is_string()) return false;
  const std::string type = it->get<std::string>();
  return type == "learned" || type == "learned_range";
}

PipelineResult KandinskyV22InpaintPipeline::run(const KandinskyV22InpaintRequest& r) {
  c10::NoGradGuard no_grad;
  if (!r.image_embeds.defined() || r.image_embeds.dim() != 2) {
    throw ValueError("`image_embeds` must be a 2-d tensor [batch, embedding_dim]");
  }
  if (!r.image.defined() || r.image.dim() != 4) throw ValueError("`image` must be a 4-d tensor [B, C, H, W]");
  if (!r.mask_image.defined() || r.mask_image.dim() != 4 || r.mask_image.size(1) != 1) {
    throw ValueError("`mask_image` must be a 4-d tensor [B, 1, H, W], got " +
                     (r.mask_image.defined() ? c10::str(r.mask_image.sizes()) : std::string("none")));
  }
  if (r.num_inference_steps < 1) throw ValueError("`num_inference_steps` must be a positive integer");
  if (r.num_images_per_prompt < 1) throw ValueError("`num_images_per_prompt` must be a positive integer");
  if (r.height < 1 || r.width < 1) throw ValueError("`height` and `width` must be positive");
  const c10::Device device = execution_device();
  const bool cfg = r.guidance_scale > 1.0;
  const int64_t n = r.num_images_per_prompt;
  const int64_t batch_size = r.image_embeds.size(0) * n;

  // Ref: diffusers __call__: with guidance the embeddings are repeated per image and stacked
  // [negative; positive] in the UNet's dtype; without, they are used as given.
  at::Tensor image_embeds = r.image_embeds;
  at::Tensor negative_image_embeds = r.negative_image_embeds;
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
  const at::ScalarType dtype = image_embeds.scalar_type();

  // 5. set timesteps (the whole schedule: inpainting has no strength)
  scheduler_->set_timesteps(r.num_inference_steps, device, {}, {});
  const TimestepWindow window = full_schedule(*scheduler_, r.num_inference_steps);

  // Encode the image; the keep-mask reaches the latents' size by nearest interpolation, is eroded,
  // and cuts the masked image out of the image's latents.
  if (r.mask_image.size(0) != r.image.size(0)) {
    throw ValueError("`image` and `mask_image` must have the same batch size, got " +
                     std::to_string(r.image.size(0)) + " and " + std::to_string(r.mask_image.size(0)));
  }
  if (r.image.size(0) * n != batch_size) {
    throw ValueError("`image` has batch " + std::to_string(r.image.size(0)) + " but `image_embeds` has batch " +
                     std::to_string(r.image_embeds.size(0)) + "; pass one image and one mask per image embedding");
  }
  use_component("movq", "unet");
  const at::Tensor image_latents = movq_->encode(r.image.to(device, dtype));
  at::Tensor mask_image = r.mask_image.to(device, dtype);
  mask_image = at::upsample_nearest2d(mask_image, {image_latents.size(2), image_latents.size(3)});
  mask_image = prepare_kandinsky_inpaint_mask(mask_image);
  at::Tensor masked_image = image_latents * mask_image;
  mask_image = mask_image.repeat_interleave(n, 0);
  masked_image = masked_image.repeat_interleave(n, 0);
  if (cfg) {
    mask_image = mask_image.repeat({2, 1, 1, 1});
    masked_image = masked_image.repeat({2, 1, 1, 1});
  }

  // 6. Prepare latent variables: the initial noise, kept for the blend.
  const int64_t latent_channels = movq_->config().latent_channels;
  const int64_t scale_factor = movq_->config().scale_factor();
  const std::vector<int64_t> shape = {batch_size, latent_channels, downscale(r.height, scale_factor),
                                      downscale(r.width, scale_factor)};
  if (r.latents.defined() && r.latents.sizes() != at::IntArrayRef(shape)) {
    throw ValueError("Unexpected latents shape, got " + c10::str(r.latents.sizes()) + ", expected " +
                     c10::str(at::IntArrayRef(shape)));
  }
  if (shape[2] != image_latents.size(2) || shape[3] != image_latents.size(3)) {
    throw ValueError("`image` of size " + std::to_string(r.image.size(2)) + "x" + std::to_string(r.image.size(3)) +
                     " gives latents of size " + std::to_string(image_latents.size(2)) + "x" +
                     std::to_string(image_latents.size(3)) + " but height=" + std::to_string(r.height) +
                     " and width=" + std::to_string(r.width) + " need latents of size " + std::to_string(shape[2]) +
                     "x" + std::to_string(shape[3]));
  }
  const int64_t unet_channels = latent_channels + masked_image.size(1) + mask_image.size(1);
  if (unet_channels != unet_->config().in_channels) {
    throw ValueError("KandinskyV22InpaintPipeline needs a UNet with in_channels = " + std::to_string(unet_channels) +
                     " (latents, masked image, mask), got " + std::to_string(unet_->config().in_channels));
  }
  const at::Tensor noise = initial_noise(r.latents, shape, r.generators, device, dtype, *scheduler_);
  StepTensors tensors{{"latents", noise},
                      {"image_embeds", image_embeds},
                      {"masked_image", masked_image},
                      {"mask_image", mask_image}};
  if (negative_image_embeds.defined()) tensors["negative_image_embeds"] = negative_image_embeds;

  // 7. Denoising loop: [latents, masked_image, mask_image] on the channels (Kandinsky's order, the
  // reverse of SD's), the image embeddings as the added condition, the blend after every step.
  const LearnedVarianceGuidance guider(r.guidance_scale, latent_channels, scheduler_learns_variance());
  const AddedConditions image_embeddings = AddedConditions::image();
  const ConcatenatedChannels masked_image_channels("masked_image");
  const ConcatenatedChannels mask_channels("mask_image");
  UNetDenoiser denoiser(*unet_, /*encoder_states=*/"", {&image_embeddings, &masked_image_channels, &mask_channels});
  const at::Tensor first_image_latents = image_latents.narrow(0, 0, 1);
  const KandinskyInpaintBlend blend(first_image_latents, noise, window.timesteps.cpu());
  DenoisingLoopSpec spec = loop_spec(r, window, *scheduler_, denoiser, guider, offload_.get());
  spec.scales_model_input = false;
  spec.progress_per_timestep = true;
  spec.after_step = {&blend};
  // The final blend reads the mask the last callback left (diffusers' local `mask_image`).
  at::Tensor final_mask = mask_image;
  if (r.callback_on_step_end) {
    spec.callback_on_step_end = [&final_mask, user = r.callback_on_step_end](
                                    int64_t step, const at::Tensor& timestep, const StepTensors& step_tensors) {
      StepCallbackOutput out = user(step, timestep, step_tensors);
      const auto it = out.tensors.find("mask_image");
      final_mask = it != out.tensors.end() && it->second.defined() ? it->second : step_tensors.at("mask_image");
      return out;
    };
  }
  const DenoisingLoopResult loop = run_denoising_loop(spec, std::move(tensors));

  // Ref: diffusers post-processing: the first image's latents where the first keep-mask is 1.
  const at::Tensor init_mask = final_mask.narrow(0, 0, 1);
  const at::Tensor latents = init_mask * first_image_latents + (1 - init_mask) * loop.latents;
  PipelineResult result{latents, loop.num_timesteps};
  // 8. Decode without the codebook lookup.
  if (!r.output_latents) {
    use_component("movq");
    result.output = movq_->decode(latents, /*force_not_quantize=*/true).first;
  }
  free_components();
  return result;
}

std::vector<ModelCpuOffload::Component> KandinskyV22InpaintPipeline::offload_components() const {
  std::vector<ModelCpuOffload::Component> components;
  add_streamed_component(components, "unet", unet_);
  add_offload_component(components, "movq", movq_);
  return components;
}

}  // namespace nd
