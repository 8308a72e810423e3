// Mirrors diffusers PriorTransformer (models/transformers/prior_transformer.py): the unCLIP /
// Kandinsky prior that maps a text embedding to a CLIP image embedding. The token sequence is
// [encoder states, projected text embedding, time embedding, noisy image embedding, prd token],
// run through self-attention blocks under a causal mask combined with the text mask.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/cuda_graph.h"
#include "io/json_config.h"
#include "io/state_dict.h"
#include "models/activations.h"
#include "models/embeddings.h"
#include "models/layers.h"

namespace nd {

struct PriorTransformerConfig {
  // Defaults are diffusers' PriorTransformer constructor defaults (the Karlo/Kandinsky prior).
  int64_t num_attention_heads = 32;
  int64_t attention_head_dim = 64;
  int64_t num_layers = 20;
  int64_t embedding_dim = 768;
  int64_t num_embeddings = 77;        // text tokens; with additional_embeddings, the causal mask's size
  int64_t additional_embeddings = 4;  // proj, time, image and prd tokens
  Activation time_embed_act_fn = Activation::Silu;
  bool norm_in = false;               // norm_in_type: null | "layer"
  bool embedding_proj_norm = false;   // embedding_proj_norm_type: null | "layer"
  bool encoder_hid_proj = true;       // encoder_hid_proj_type: "linear" | null
  bool prd_embedding = true;          // added_emb_type: "prd" | null
  // null (or 0) means: diffusers' `x or fallback` (inner_dim, embedding_dim, embedding_dim).
  int64_t time_embed_dim = 0;
  int64_t embedding_proj_dim = 0;
  int64_t clip_embed_dim = 0;

  static PriorTransformerConfig from_json(const io::JsonConfig& json);
  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  int64_t sequence_length() const { return num_embeddings + additional_embeddings; }
};

// diffusers' BasicTransformerBlock as PriorTransformer builds it: self-attention only (with an
// additive mask), biased q/k/v, and a GELU (not GEGLU) feed-forward. The UNet's form, with
// cross-attention and GEGLU, is models/attention.h's BasicTransformerBlock.
class PriorTransformerBlock {
 public:
  static PriorTransformerBlock load(const WeightLoader& w, const PriorTransformerConfig& config);
  // x: [B, L, inner]; mask: additive float [B, 1, L, L] or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask) const;
  void apply(const ParameterFn& fn);

 private:
  LayerNorm norm1_, norm3_;
  Linear to_q_, to_k_, to_v_, to_out_;  // attn1.to_q ... attn1.to_out.0
  Linear ff_in_, ff_out_;                // ff.net.0.proj (GELU), ff.net.2
  int64_t heads_ = 0, head_dim_ = 0;
};

class PriorTransformer {
 public:
  static PriorTransformer load(const PriorTransformerConfig& config, const io::StateDict& state_dict,
                               const std::string& origin, std::optional<at::ScalarType> dtype);

  // hidden_states: [B, embedding_dim] (or [B, 1, embedding_dim]); timestep: 0-d, [1] or [B];
  // proj_embedding: [B, embedding_proj_dim]; encoder_hidden_states: [B, S, embedding_dim]
  // (required with encoder_hid_proj); attention_mask: [B, S] bool/0-1, optional.
  // Returns predicted_image_embedding [B, clip_embed_dim] (with the prd token).
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& timestep, const at::Tensor& proj_embedding,
                     const std::optional<at::Tensor>& encoder_hidden_states,
                     const std::optional<at::Tensor>& attention_mask) const;

  // Ref: diffusers PriorTransformer.post_process_latents: latents * clip_std + clip_mean.
  at::Tensor post_process_latents(const at::Tensor& prior_latents) const;

  void to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype);
  at::ScalarType dtype() const { return positional_embedding_.scalar_type(); }
  c10::Device device() const { return positional_embedding_.device(); }
  const PriorTransformerConfig& config() const { return config_; }
  int64_t num_parameters() const;
  void apply(const ParameterFn& fn);
  // Its transformer blocks, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);

 private:
  // Ref: diffusers forward: (1 - mask) * -10000, padded for the added tokens, plus the causal mask.
  at::Tensor combined_mask(const at::Tensor& attention_mask, int64_t length, at::ScalarType dtype) const;
  // The forward proper, on inputs already on the model's device: the unit a CUDA graph captures.
  at::Tensor forward_on_device(const at::Tensor& hidden_states, const at::Tensor& timestep,
                               const at::Tensor& proj_embedding, const std::optional<at::Tensor>& encoder_hidden_states,
                               const std::optional<at::Tensor>& attention_mask) const;
  void visit_parameters(const ParameterFn& fn);

  PriorTransformerConfig config_;
  TimestepEmbedding time_embedding_;
  Linear proj_in_, embedding_proj_, proj_to_clip_embeddings_;
  std::optional<LayerNorm> embedding_proj_norm_, norm_in_;
  std::optional<Linear> encoder_hidden_states_proj_;
  at::Tensor positional_embedding_;  // [1, num_embeddings + additional_embeddings, inner]
  at::Tensor prd_embedding_;         // [1, 1, inner] or undefined
  std::vector<PriorTransformerBlock> transformer_blocks_;
  LayerNorm norm_out_;
  at::Tensor clip_mean_, clip_std_;  // [1, clip_embed_dim]
  // 25 prior steps of 20 small layers are launch-bound: replayed from graphs, as the UNet's.
  ModelGraphs graphs_;
};

}  // namespace nd
