// Mirrors diffusers Attention (attention_processor.py) with the processors our models use:
// AttnProcessor2_0 (to_q/to_k/to_v, to_out.0, optional GroupNorm or SpatialNorm on the input and
// residual connection: the VAE's form), and AttnAddedKVProcessor2_0 (extra add_k_proj/add_v_proj
// of the encoder states, concatenated before the self-attention keys: the Kandinsky 2.2 UNet's
// SimpleCrossAttn blocks). Also SpatialNorm, which diffusers defines in the same file.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <functional>
#include <optional>
#include <utility>

#include "models/encoder_key_values.h"
#include "models/layers.h"

namespace nd {

// Ref: diffusers SpatialNorm (MoVQ, arXiv 2209.09002): GroupNorm(32 groups, eps 1e-6) of f, then
// a per-pixel scale and shift from the quantized latents zq resized to f's size.
class SpatialNorm {
 public:
  static SpatialNorm load(const WeightLoader& w, int64_t f_channels, int64_t zq_channels);
  // f: [B, f_channels, H, W]; zq: [B, zq_channels, h, w].
  at::Tensor forward(const at::Tensor& f, const at::Tensor& zq) const;
  void apply(const ParameterFn& fn);

 private:
  GroupNorm norm_layer_;
  Conv2d conv_y_, conv_b_;
};

// Visits a model's attention layers (to fuse their projections, to find the cross-attention ones).
using AttentionVisitor = std::function<void(Attention& layer)>;

struct AttentionConfig {
  int64_t query_dim = 0;
  int64_t cross_attention_dim = 0;  // 0: self-attention (keys from the query input)
  int64_t heads = 8;
  int64_t dim_head = 64;
  bool qkv_bias = false;
  bool out_bias = true;
  int64_t norm_num_groups = 0;  // > 0: GroupNorm on the input (VAE, added-KV attention)
  double eps = 1e-5;
  int64_t spatial_norm_dim = 0;  // > 0: SpatialNorm(query_dim, spatial_norm_dim) on the input (MoVQ)
  bool residual_connection = false;
  double rescale_output_factor = 1.0;
  // > 0: AttnAddedKVProcessor: add_k_proj/add_v_proj map the encoder states (this many features)
  // to keys/values; only_cross_attention drops to_k/to_v (no self-attention keys).
  int64_t added_kv_proj_dim = 0;
  bool only_cross_attention = false;
};

class Attention {
 public:
  static Attention load(const WeightLoader& w, const AttentionConfig& config);
  // hidden: [B, L, query_dim] or [B, C, H, W]; context: [B, S, cross_attention_dim] (or
  // [B, S, added_kv_proj_dim]) or undefined; temb: SpatialNorm's zq when spatial_norm_dim > 0.
  // With context.projected, the keys and values of the encoder states come from there.
  at::Tensor forward(const at::Tensor& hidden, const EncoderContext& context = EncoderContext(),
                     const at::Tensor& temb = at::Tensor()) const;
  void apply(const ParameterFn& fn);

  // Whether forward attends to encoder states (cross-attention, or added keys and values).
  bool reads_encoder_states() const { return config_.cross_attention_dim > 0 || config_.added_kv_proj_dim > 0; }

  // Ref: diffusers Attention.fuse_projections and FusedAttnProcessor2_0: one GEMM makes query, key
  // and value (to_qkv) of a self-attention layer, or key and value (to_kv) of a cross-attention
  // one. Unlike diffusers, the separate projections are not kept beside the fused one (no weight
  // is held twice); unfusing splits them back out. Layers with added key/value projections raise.
  void fuse_projections();
  void unfuse_projections();
  bool fused_projections() const { return to_qkv_.has_value() || to_kv_.has_value(); }
  bool has_added_projections() const { return add_k_proj_.has_value(); }
  // The encoder keys and values forward would project from `states` [B, S, D]: [B, S, inner] each.
  std::pair<at::Tensor, at::Tensor> project_encoder_states(const at::Tensor& states) const;

 private:
  at::Tensor forward_added_kv(const at::Tensor& hidden, const EncoderContext& context) const;
  // [B, L, inner] -> [B, heads, L, dim_head]
  at::Tensor split_heads(const at::Tensor& t, int64_t batch) const;
  // Keys and values [B, S, inner] of `input` through the separate or the fused projections.
  std::pair<at::Tensor, at::Tensor> keys_values_of(const at::Tensor& input) const;
  // Query, key and value [B, heads, L, dim_head] for the normalised input x [B, L, C]: from the
  // fused projection, from keys and values projected once per prompt, or projected here.
  std::array<at::Tensor, 3> queries_keys_values(const at::Tensor& x, const EncoderContext& context) const;

  AttentionConfig config_;
  std::optional<GroupNorm> group_norm_;
  std::optional<SpatialNorm> spatial_norm_;
  Linear to_q_, to_out_;
  std::optional<Linear> to_k_, to_v_;  // absent with only_cross_attention
  std::optional<Linear> add_k_proj_, add_v_proj_;
  // Fused: to_qkv_ replaces to_q_/to_k_/to_v_ (self-attention), to_kv_ replaces to_k_/to_v_.
  std::optional<Linear> to_qkv_, to_kv_;
};

}  // namespace nd
