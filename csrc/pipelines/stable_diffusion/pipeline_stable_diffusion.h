// Mirrors diffusers StableDiffusionPipeline (pipelines/stable_diffusion/pipeline_stable_diffusion.py):
// text-to-image for the SD 1.x/2.x family, and the steps the other SD 1.x/2.x pipelines build on
// (prompt encoding, the prepared call, the denoising loop and the decode). Python checks
// arguments; nothing here calls back into Python unless the caller installs a step callback.
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
#include "pipelines/denoising_loop.h"
#include "pipelines/loop_inputs/loop_input.h"
#include "pipelines/pipeline_utils.h"
#include "schedulers/scheduling_utils.h"
#include "tokenizers/clip_tokenizer.h"

namespace nd {

// callback_on_step_end tensors: latents, prompt_embeds, negative_prompt_embeds.
struct StableDiffusionRequest : LoopOptions {
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
  std::optional<int64_t> clip_skip;
  bool output_latents = false;
};

// What the steps before the denoising loop hand to it.
struct PreparedCall {
  // latents, prompt_embeds ([negative; positive] under guidance), negative_prompt_embeds, and what a
  // pipeline adds for its callback (the ControlNet's image).
  StepTensors tensors;
  TimestepWindow window;
  int64_t batch_size = 0;  // prompts x num_images_per_prompt
  bool upcast_vae = false;  // the decode upcasts a float16 VAE with force_upcast (the x4 upscaler)
};

class StableDiffusionPipeline : public ModelOffloadSupport {
 public:
  StableDiffusionPipeline(std::shared_ptr<CLIPTokenizer> tokenizer, std::shared_ptr<CLIPTextModel> text_encoder,
                          std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<AutoencoderKL> vae,
                          std::shared_ptr<Scheduler> scheduler);
  virtual ~StableDiffusionPipeline() = default;

  // Text-to-image. Returns latents (output_latents) or the decoded images in [-1, 1].
  PipelineResult run(const StableDiffusionRequest& request);

  // Ref: diffusers StableDiffusionPipeline.encode_prompt. Returns (prompt_embeds,
  // negative_prompt_embeds), the latter undefined without guidance.
  std::pair<at::Tensor, at::Tensor> encode_prompt(const StableDiffusionRequest& request,
                                                  bool do_classifier_free_guidance) const;

  void set_scheduler(std::shared_ptr<Scheduler> scheduler) { scheduler_ = std::move(scheduler); }
  const std::shared_ptr<Scheduler>& scheduler() const { return scheduler_; }
  // Ref: diffusers model_cpu_offload_seq = "text_encoder->unet->vae".
  std::vector<ModelCpuOffload::Component> offload_components() const;

 protected:
  // Steps 3.-5. of text-to-image: the prompt, the full schedule and the initial noise.
  PreparedCall prepare_text_to_image(const StableDiffusionRequest& r);
  // Step 3. and the callback's prompt tensors of every SD 1.x/2.x pipeline.
  PreparedCall encode_prompt_tensors(const StableDiffusionRequest& r);
  // The denoising loop over the prepared call, the UNet called with `inputs` and the latents
  // rewritten by `after_step` after each step, then the decode.
  PipelineResult denoise(const StableDiffusionRequest& r, PreparedCall call,
                         const std::vector<const LoopInput*>& inputs = {},
                         const std::vector<const AfterStepHook*>& after_step = {});
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
