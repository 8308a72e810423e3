// Mirrors diffusers StableDiffusionXLPipeline
// (pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py): text-to-image with SDXL's two
// text encoders, pooled text embeddings and micro-conditioning (add_time_ids). The image-to-image
// pipeline derives from it and shares prompt encoding, the loop and the decode.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
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

using ImageSize = std::array<double, 2>;  // (height, width) or (top, left), as diffusers' tuples

// One call's arguments. Python resolves diffusers' "x or y" fallbacks between prompts (where the
// empty string counts as absent) and broadcasts strings to the batch before filling this in.
struct StableDiffusionXLRequest : LoopOptions {
  std::vector<std::string> prompt;     // empty when prompt_embeds is given
  std::vector<std::string> prompt_2;   // resolved: prompt_2 or prompt
  // nullopt = no negative prompt: zeros when force_zeros_for_empty_prompt, else "".
  std::optional<std::vector<std::string>> negative_prompt;
  std::optional<std::vector<std::string>> negative_prompt_2;  // nullopt: negative_prompt
  at::Tensor prompt_embeds, negative_prompt_embeds;                // optional [B, 77, D1 + D2]
  at::Tensor pooled_prompt_embeds, negative_pooled_prompt_embeds;  // optional [B, P]
  std::optional<int64_t> clip_skip;

  at::Tensor image;    // img2img: [B, 3, H, W] in [-1, 1], or latents
  at::Tensor latents;  // optional: replaces the prepared latents
  int64_t height = 1024, width = 1024;  // text2img
  double strength = 0.3;
  int64_t num_inference_steps = 50;
  std::vector<double> timesteps, sigmas;
  std::optional<double> denoising_start;  // valid values only (0 < x < 1)
  std::optional<double> denoising_end;
  bool add_noise = true;  // img2img: false whenever denoising_start was passed at all
  double guidance_scale = 5.0;
  double guidance_rescale = 0.0;
  int64_t num_images_per_prompt = 1;

  std::optional<ImageSize> original_size, target_size;  // default: the output size
  ImageSize crops_coords_top_left{0, 0};
  std::optional<ImageSize> negative_original_size, negative_target_size;
  ImageSize negative_crops_coords_top_left{0, 0};
  double aesthetic_score = 6.0;           // img2img with requires_aesthetics_score
  double negative_aesthetic_score = 2.5;

  bool output_latents = false;
};

struct SDXLPromptEmbeds {
  at::Tensor prompt_embeds, negative_prompt_embeds;                // negatives undefined without guidance
  at::Tensor pooled_prompt_embeds, negative_pooled_prompt_embeds;
};

class StableDiffusionXLPipeline : public ModelOffloadSupport {
 public:
  // tokenizer/text_encoder may be null (the refiner has only the second pair).
  StableDiffusionXLPipeline(std::shared_ptr<CLIPTokenizer> tokenizer, std::shared_ptr<CLIPTextModel> text_encoder,
                            std::shared_ptr<CLIPTokenizer> tokenizer_2,
                            std::shared_ptr<CLIPTextModel> text_encoder_2,
                            std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<AutoencoderKL> vae,
                            std::shared_ptr<Scheduler> scheduler, bool force_zeros_for_empty_prompt);
  virtual ~StableDiffusionXLPipeline() = default;

  // Returns latents (output_latents) or the decoded images in [-1, 1].
  PipelineResult run(const StableDiffusionXLRequest& request);

  // Ref: diffusers StableDiffusionXLPipeline.encode_prompt.
  SDXLPromptEmbeds encode_prompt(const StableDiffusionXLRequest& request, bool do_classifier_free_guidance) const;

  void set_scheduler(std::shared_ptr<Scheduler> scheduler) { scheduler_ = std::move(scheduler); }
  int64_t vae_scale_factor() const { return vae_->config().scale_factor(); }
  // Ref: diffusers model_cpu_offload_seq = "text_encoder->text_encoder_2->unet->vae".
  std::vector<ModelCpuOffload::Component> offload_components() const;

 protected:
  struct Conditioning {
    at::Tensor prompt_embeds;    // [2B or B, 77, D]: [negative; positive] with guidance
    at::Tensor add_text_embeds;  // pooled, same order
    at::Tensor add_time_ids;
  };

  // Ref: diffusers _get_add_time_ids: checks the id count against the UNet's add_embedding.
  at::Tensor add_time_ids_tensor(const std::vector<double>& ids, int64_t text_encoder_projection_dim,
                                 at::ScalarType dtype, const std::string& hint) const;
  int64_t text_encoder_projection_dim(const SDXLPromptEmbeds& embeds) const;
  // Ref: diffusers 8.1 "Apply denoising_end": the window cut at the request's denoising_end.
  TimestepWindow apply_denoising_end(const StableDiffusionXLRequest& r, TimestepWindow window) const;
  // The denoising loop of every SDXL pipeline over `window` (already cut at denoising_end), the
  // UNet called with its added conditions and `inputs`, the latents rewritten by `after_step`, then
  // the decode. Callback tensors are SDXL's (latents, prompt_embeds, add_text_embeds,
  // add_time_ids) and `extra_tensors` (inpainting's mask).
  PipelineResult denoise(const StableDiffusionXLRequest& r, at::Tensor latents, Conditioning cond,
                         TimestepWindow window, StepTensors extra_tensors = {},
                         std::vector<const LoopInput*> inputs = {},
                         const std::vector<const AfterStepHook*>& after_step = {});
  c10::Device execution_device() const { return offload_ ? offload_->execution_device() : unet_->device(); }

  // What the pipeline runs once the prompt is encoded: its text encoder's weights hand over to it.
  virtual std::string component_after_prompt() const { return "unet"; }

  std::shared_ptr<CLIPTokenizer> tokenizer_, tokenizer_2_;
  std::shared_ptr<CLIPTextModel> text_encoder_, text_encoder_2_;
  std::shared_ptr<UNet2DConditionModel> unet_;
  std::shared_ptr<AutoencoderKL> vae_;
  std::shared_ptr<Scheduler> scheduler_;
  bool force_zeros_for_empty_prompt_;

 private:
  // The penultimate (or clip_skip-selected) hidden states of every encoder, concatenated, and the
  // pooled projection of the last encoder that has one. `last_pass`: no other prompt is encoded
  // after this one, so the component after the prompt may start copying.
  std::pair<at::Tensor, at::Tensor> encode_with_all_encoders(
      const std::vector<std::vector<std::string>>& texts, std::optional<int64_t> max_length,
      std::optional<int64_t> clip_skip, at::Tensor pooled, bool last_pass) const;
};

}  // namespace nd
