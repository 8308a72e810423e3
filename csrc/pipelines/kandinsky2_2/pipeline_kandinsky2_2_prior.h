// Mirrors diffusers KandinskyV22PriorPipeline (pipelines/kandinsky2_2/pipeline_kandinsky2_2_prior.py):
// text -> CLIP image embedding. Prompt encoding, the UnCLIP denoising loop with classifier-free
// guidance, the clip_mean/clip_std un-normalization and the negative image embedding all run in
// the engine; Python checks arguments. Nothing here calls back into Python unless the caller
// installs a step callback.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "models/clip/modeling_clip.h"
#include "models/transformers/prior_transformer.h"
#include "offload/model_offload.h"
#include "pipelines/denoising_loop.h"
#include "pipelines/pipeline_utils.h"
#include "schedulers/scheduling_utils.h"
#include "tokenizers/clip_tokenizer.h"

namespace nd {

// callback_on_step_end tensors: latents, prompt_embeds, text_encoder_hidden_states, text_mask.
struct KandinskyV22PriorRequest : LoopOptions {
  std::vector<std::string> prompt;           // at least one
  std::vector<std::string> negative_prompt;  // empty: diffusers' None (the zero-image embedding)
  int64_t num_images_per_prompt = 1;
  int64_t num_inference_steps = 25;
  at::Tensor latents;                     // optional [B * num_images_per_prompt, embedding_dim]
  double guidance_scale = 4.0;
};

struct KandinskyPriorOutput {
  at::Tensor image_embeds;           // [B * num_images_per_prompt, clip_embed_dim]
  at::Tensor negative_image_embeds;  // same shape
  int64_t num_timesteps = 0;         // diffusers' num_timesteps
};

class KandinskyV22PriorPipeline : public ModelOffloadSupport {
 public:
  // image_encoder may be null when every call passes a negative prompt.
  KandinskyV22PriorPipeline(std::shared_ptr<PriorTransformer> prior,
                            std::shared_ptr<CLIPVisionModelWithProjection> image_encoder,
                            std::shared_ptr<CLIPTextModel> text_encoder, std::shared_ptr<CLIPTokenizer> tokenizer,
                            std::shared_ptr<Scheduler> scheduler);

  KandinskyPriorOutput run(const KandinskyV22PriorRequest& request);

  // Ref: diffusers get_zero_embed: the image encoder's embedding of an all-zero image, repeated
  // batch_size times. Computed once per pipeline (and device/dtype), then reused.
  at::Tensor get_zero_embed(int64_t batch_size);

  const std::shared_ptr<Scheduler>& scheduler() const { return scheduler_; }
  // Ref: diffusers model_cpu_offload_seq = "text_encoder->image_encoder->prior".
  std::vector<ModelCpuOffload::Component> offload_components() const;

 private:
  struct EncodedPrompt {
    at::Tensor prompt_embeds, text_encoder_hidden_states, text_mask;
  };
  // Ref: diffusers KandinskyV22PriorPipeline._encode_prompt.
  EncodedPrompt encode_prompt(const std::vector<std::string>& prompt, int64_t num_images_per_prompt,
                              bool do_classifier_free_guidance,
                              const std::vector<std::string>& negative_prompt) const;
  std::pair<at::Tensor, at::Tensor> encode_text(const std::vector<std::string>& texts) const;
  c10::Device execution_device() const { return offload_ ? offload_->execution_device() : prior_->device(); }

  std::shared_ptr<PriorTransformer> prior_;
  std::shared_ptr<CLIPVisionModelWithProjection> image_encoder_;
  std::shared_ptr<CLIPTextModel> text_encoder_;
  std::shared_ptr<CLIPTokenizer> tokenizer_;
  std::shared_ptr<Scheduler> scheduler_;
  std::mutex zero_embed_mutex_;
  at::Tensor zero_embed_;  // [1, projection_dim], on the image encoder's device and dtype
};

}  // namespace nd
