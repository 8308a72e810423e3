// Kandinsky 2.2's PriorTransformer as the loop's denoiser: it denoises a CLIP image embedding,
// conditioned on the step tensors prompt_embeds, text_encoder_hidden_states and text_mask.
#pragma once

#include "models/transformers/prior_transformer.h"
#include "pipelines/denoising_loop.h"

namespace nd {

class PriorDenoiser : public Denoiser {
 public:
  explicit PriorDenoiser(const PriorTransformer& prior) : prior_(prior) {}
  at::Tensor operator()(const LoopStep& step) override;

 private:
  const PriorTransformer& prior_;
};

}  // namespace nd
