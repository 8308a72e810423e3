// Mirrors diffusers Transformer2DModel (transformers/transformer_2d.py) for continuous inputs:
// GroupNorm, proj_in (1x1 conv or linear), BasicTransformerBlocks, proj_out, residual.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "models/attention.h"
#include "models/layers.h"

namespace nd {

struct Transformer2DConfig {
  int64_t in_channels = 0;
  int64_t num_attention_heads = 0;
  int64_t attention_head_dim = 0;
  int64_t num_layers = 1;
  int64_t cross_attention_dim = 0;
  int64_t norm_num_groups = 32;
  bool use_linear_projection = false;
  bool only_cross_attention = false;
  bool upcast_attention = false;  // scores already in fp32 with SDPA's fp32 accumulation
};

class Transformer2DModel {
 public:
  static Transformer2DModel load(const WeightLoader& w, const Transformer2DConfig& config);
  // x: [B, C, H, W]; context: [B, S, cross_attention_dim] -> [B, C, H, W].
  at::Tensor forward(const at::Tensor& x, const EncoderContext& context) const;
  void apply(const ParameterFn& fn);
  void for_each_attention(const AttentionVisitor& visit);
  // Its streamable blocks, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);

 private:
  Transformer2DConfig config_;
  GroupNorm norm_;
  Linear proj_in_linear_, proj_out_linear_;
  Conv2d proj_in_conv_, proj_out_conv_;
  std::vector<BasicTransformerBlock> transformer_blocks_;
};

}  // namespace nd
