// Mirrors diffusers attention.py: BasicTransformerBlock (self-attention, cross-attention,
// feed-forward, each behind a LayerNorm with a residual) and FeedForward with GEGLU.
#pragma once

#include <ATen/core/Tensor.h>

#include "models/attention_processor.h"
#include "models/layers.h"

namespace nd {

struct BasicTransformerBlockConfig {
  int64_t dim = 0;
  int64_t num_attention_heads = 0;
  int64_t attention_head_dim = 0;
  int64_t cross_attention_dim = 0;
  bool only_cross_attention = false;  // attn1 attends to the encoder states too
  bool attention_bias = false;
  double norm_eps = 1e-5;
};

// FeedForward(dim, activation_fn="geglu", mult=4): net.0.proj -> GEGLU, net.2 back to dim.
class FeedForward {
 public:
  static FeedForward load(const WeightLoader& w, int64_t dim);
  at::Tensor forward(const at::Tensor& x) const;
  void apply(const ParameterFn& fn);

 private:
  Linear proj_;  // net.0.proj: dim -> 2 * inner
  Linear out_;   // net.2: inner -> dim
};

class BasicTransformerBlock {
 public:
  static BasicTransformerBlock load(const WeightLoader& w, const BasicTransformerBlockConfig& config);
  // x: [B, L, dim]; context: [B, S, cross_attention_dim].
  at::Tensor forward(const at::Tensor& x, const EncoderContext& context) const;
  void apply(const ParameterFn& fn);
  void for_each_attention(const AttentionVisitor& visit);

 private:
  BasicTransformerBlockConfig config_;
  LayerNorm norm1_, norm2_, norm3_;
  Attention attn1_, attn2_;
  FeedForward ff_;
};

}  // namespace nd
