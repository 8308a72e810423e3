#include "models/transformers/transformer_2d.h"

#include <ATen/ATen.h>

#include "runtime/memory_format.h"

namespace nd {

Transformer2DModel Transformer2DModel::load(const WeightLoader& w, const Transformer2DConfig& c) {
  Transformer2DModel t;
  t.config_ = c;
  const int64_t inner = c.num_attention_heads * c.attention_head_dim;
  // Ref: diffusers transformer_2d.py, _init_continuous_input: GroupNorm eps is fixed at 1e-6.
  t.norm_ = GroupNorm::load(w.child("norm"), c.norm_num_groups, c.in_channels, 1e-6);
  if (c.use_linear_projection) {
    t.proj_in_linear_ = Linear::load(w.child("proj_in"), c.in_channels, inner);
    t.proj_out_linear_ = Linear::load(w.child("proj_out"), inner, c.in_channels);
  } else {
    t.proj_in_conv_ = Conv2d::load(w.child("proj_in"), c.in_channels, inner, 1);
    t.proj_out_conv_ = Conv2d::load(w.child("proj_out"), inner, c.in_channels, 1);
  }
  BasicTransformerBlockConfig block;
  block.dim = inner;
  block.num_attention_heads = c.num_attention_heads;
  block.attention_head_dim = c.attention_head_dim;
  block.cross_attention_dim = c.cross_attention_dim;
  block.only_cross_attention = c.only_cross_attention;
  const WeightLoader blocks = w.child("transformer_blocks");
  for (int64_t i = 0; i < c.num_layers; ++i) {
    t.transformer_blocks_.push_back(BasicTransformerBlock::load(blocks.child(std::to_string(i)), block));
  }
  return t;
}

at::Tensor Transformer2DModel::forward(const at::Tensor& x, const EncoderContext& context) const {
  const int64_t batch = x.size(0), height = x.size(2), width = x.size(3);
  at::Tensor h = norm_.forward(x);
  int64_t inner = 0;
  if (config_.use_linear_projection) {
    inner = h.size(1);
    h = h.permute({0, 2, 3, 1}).reshape({batch, height * width, inner});  // [B, HW, C]
    h = proj_in_linear_.forward(h);                                     // [B, HW, inner]
  } else {
    h = proj_in_conv_.forward(h);  // [B, inner, H, W]
    inner = h.size(1);
    h = h.permute({0, 2, 3, 1}).reshape({batch, height * width, inner});  // [B, HW, inner]
  }
  for (const BasicTransformerBlock& block : transformer_blocks_) h = block.forward(h, context);
  // Back to the engine's layout: channels-last tokens need no copy.
  const at::MemoryFormat layout =
      channels_last_on(x.device()) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  if (config_.use_linear_projection) {
    h = proj_out_linear_.forward(h);
    h = h.reshape({batch, height, width, -1}).permute({0, 3, 1, 2}).contiguous(layout);  // [B, C, H, W]
  } else {
    h = h.reshape({batch, height, width, -1}).permute({0, 3, 1, 2}).contiguous(layout);  // [B, inner, H, W]
    h = proj_out_conv_.forward(h);
  }
  return h + x;
}

void Transformer2DModel::apply(const ParameterFn& fn) {
  norm_.apply(fn);
  if (config_.use_linear_projection) {
    proj_in_linear_.apply(fn);
    proj_out_linear_.apply(fn);
  } else {
    proj_in_conv_.apply(fn);
    proj_out_conv_.apply(fn);
  }
  for (BasicTransformerBlock& b : transformer_blocks_) b.apply(fn);
}

void Transformer2DModel::for_each_attention(const AttentionVisitor& visit) {
  for (BasicTransformerBlock& block : transformer_blocks_) block.for_each_attention(visit);
}

void Transformer2DModel::for_each_unit(const UnitVisitor& visit) {
  // Each transformer block is a unit; the norm and the in/out projections move with the model.
  for (BasicTransformerBlock& block : transformer_blocks_) visit_unit(visit, block);
}

}  // namespace nd
