// Mirrors diffusers StableDiffusionPipeline (pipelines/stable_diffusion/pipeline_stable_diffusion.py):
// text-to-image for the SD 1.x/2.x family, and what the image-to-image pipeline shares with it
// (prompt encoding, the denoising loop, the decode). Python checks arguments; nothing here calls
// back into Python unless the caller installs a step callback.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/autoencoders/autoencoder_kl.h"
#include "models/clip/modeling_clip.h"
#include "models/unets/unet_2d_condition.h"
#include "offload/model_offload.h"
#include "pipelines/controlnet/controlnet_utils.h"
#include "pipelines/pipeline_utils.h"
#include "schedulers/scheduling_utils.h"
#include "tokenizers/clip_tokenizer.h"

namespace nd {

struct StableDiffusionRequest {
  std::vector<std::string> prompt;           // empty when prompt_embeds is given
  std::vector<std::string> negative_prompt;  // empty: "" for every prompt
  at::Tensor prompt_embeds;                  // optional [B, L, D]
  at::Tensor negative_prompt_embeds;         // optional [B, L, D]
  int64_t height = 512, width = 512;         // text-to-image
  at::Tensor latents;                        // optional: text-to-image noise; image-to-image: the start
  int64_t num_inference_steps = 50;
  std::vector<double> timesteps;  // custom schedule (schedulers that accept one)
  std::vector<double> sigmas;
  double guidance_scale = 7.5;
  double guidance_rescale = 0.0;  // text-to-image
  int64_t num_images_per_prompt = 1;
  double eta = 0.0;
  std::vector<at::Generator> generators;  // none, one, or one per image
  std::optional<int64_t> clip_skip;
  bool output_latents = false;
  bool progress_bar = true;
  StepCallback callback_on_step_end;  // tensors: latents, prompt_embeds, negative_prompt_embeds
};

// What some SD 1.x/2.x pipelines add to every UNet call of the shared loop, and to its decode.
struct LoopConditioning {
  const ControlNetGuidance* control = nullptr;  // the ControlNet pipelines
  // The x4 upscaler: its noised low-resolution image, appended to the scaled model input's channels,
  // and its noise level, the UNet's class labels; the decode upcasts a float16 VAE with force_upcast.
  at::Tensor image;
  at::Tensor class_labels;
  bool upcast_vae = false;
};

class StableDiffusionPipeline : public ModelOffloadSupport {
 public:
  StableDiffusionPipeline(std::shared_ptr<CLIPTokenizer> tokenizer, std::shared_ptr<CLIPTextModel> text_encoder,
                          std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<AutoencoderKL> vae,
                          std::shared_ptr<Scheduler> scheduler);
  virtual ~StableDiffusionPipeline() = default;

  // Text-to-image. Returns latents (output_latents) or the decoded images in [-1, 1].
  at::Tensor run(const StableDiffusionRequest& request);

  // Ref: diffusers StableDiffusionPipeline.encode_prompt. Returns (prompt_embeds,
  // negative_prompt_embeds), the latter undefined without guidance.
  std::pair<at::Tensor, at::Tensor> encode_prompt(const StableDiffusionRequest& request,
                                                  bool do_classifier_free_guidance) const;

  void set_scheduler(std::shared_ptr<Scheduler> scheduler) { scheduler_ = std::move(scheduler); }
  const std::shared_ptr<Scheduler>& scheduler() const { return scheduler_; }
  // Ref: diffusers model_cpu_offload_seq = "text_encoder->unet->vae".
  std::vector<ModelCpuOffload::Component> offload_components() const;

 protected:
  // Text-to-image, guided by `controlnet` when given (StableDiffusionControlNetPipeline).
  at::Tensor generate(const StableDiffusionRequest& r, const ControlNetModel* controlnet,
                      const ControlNetRequest* control);
  // The loop every SD 1.x/2.x pipeline runs over `window`, then the decode (or the latents).
  at::Tensor denoise(const StableDiffusionRequest& r, StepTensors tensors, const TimestepWindow& window,
                     const LoopConditioning& conditioning = LoopConditioning());
  c10::Device execution_device() const { return offload_ ? offload_->execution_device() : unet_->device(); }

  // What the pipeline runs once the prompt is encoded: its text encoder's weights hand over to it.
  virtual std::string component_after_prompt() const { return "unet"; }

  std::shared_ptr<CLIPTokenizer> tokenizer_;
  std::shared_ptr<CLIPTextModel> text_encoder_;
  std::shared_ptr<UNet2DConditionModel> unet_;
  std::shared_ptr<AutoencoderKL> vae_;
  std::shared_ptr<Scheduler> scheduler_;

 private:
  at::Tensor encode_text(const std::vector<std::string>& texts, int64_t max_length,
                         std::optional<int64_t> clip_skip) const;
};

}  // namespace nd
