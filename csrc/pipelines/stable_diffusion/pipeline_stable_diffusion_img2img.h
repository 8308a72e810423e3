// Mirrors diffusers StableDiffusionImg2ImgPipeline
// (pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py): prompt encoding, the
// strength cut of the schedule, latent preparation, the denoising loop and the VAE decode, all
// in the engine. Python checks arguments and converts images; nothing here calls back into Python
// unless the caller installs a step callback.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/autoencoders/autoencoder_kl.h"
#include "models/clip/modeling_clip.h"
#include "models/unets/unet_2d_condition.h"
#include "pipelines/pipeline_utils.h"
#include "schedulers/scheduling_utils.h"
#include "tokenizers/clip_tokenizer.h"

namespace nd {

struct StableDiffusionImg2ImgRequest {
  std::vector<std::string> prompt;           // empty when prompt_embeds is given
  std::vector<std::string> negative_prompt;  // empty: "" for every prompt
  at::Tensor prompt_embeds;                  // optional [B, L, D]
  at::Tensor negative_prompt_embeds;         // optional [B, L, D]
  at::Tensor image;  // [B, 3, H, W] in [-1, 1], or [B, latent_channels, h, w] latents
  double strength = 0.8;
  int64_t num_inference_steps = 50;
  std::vector<double> timesteps;  // custom schedule (schedulers that accept one)
  std::vector<double> sigmas;
  double guidance_scale = 7.5;
  int64_t num_images_per_prompt = 1;
  double eta = 0.0;
  std::vector<at::Generator> generators;  // none, one, or one per image
  std::optional<int64_t> clip_skip;
  bool output_latents = false;
  bool progress_bar = true;
  StepCallback callback_on_step_end;  // tensors: latents, prompt_embeds, negative_prompt_embeds
};

class StableDiffusionImg2ImgPipeline {
 public:
  StableDiffusionImg2ImgPipeline(std::shared_ptr<CLIPTokenizer> tokenizer,
                                 std::shared_ptr<CLIPTextModel> text_encoder,
                                 std::shared_ptr<UNet2DConditionModel> unet,
                                 std::shared_ptr<AutoencoderKL> vae,
                                 std::shared_ptr<Scheduler> scheduler);

  // Returns latents (output_latents) or the decoded images in [-1, 1] ([B, 3, H, W]).
  at::Tensor run(const StableDiffusionImg2ImgRequest& request);

  // Ref: diffusers StableDiffusionPipeline.encode_prompt. Returns (prompt_embeds,
  // negative_prompt_embeds), the latter undefined without guidance.
  std::pair<at::Tensor, at::Tensor> encode_prompt(const StableDiffusionImg2ImgRequest& request,
                                                  bool do_classifier_free_guidance) const;

  void set_scheduler(std::shared_ptr<Scheduler> scheduler) { scheduler_ = std::move(scheduler); }
  const std::shared_ptr<Scheduler>& scheduler() const { return scheduler_; }

 private:
  at::Tensor encode_text(const std::vector<std::string>& texts, int64_t max_length,
                         std::optional<int64_t> clip_skip) const;
  at::Tensor prepare_latents(const at::Tensor& image, const at::Tensor& timestep, int64_t batch_size,
                             at::ScalarType dtype, const std::vector<at::Generator>& generators);
  c10::Device execution_device() const { return unet_->device(); }

  std::shared_ptr<CLIPTokenizer> tokenizer_;
  std::shared_ptr<CLIPTextModel> text_encoder_;
  std::shared_ptr<UNet2DConditionModel> unet_;
  std::shared_ptr<AutoencoderKL> vae_;
  std::shared_ptr<Scheduler> scheduler_;
};

}  // namespace nd
