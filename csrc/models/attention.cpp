#include "models/attention.h"

#include <ATen/ATen.h>

#include "runtime/fused_ops.h"
#include "offload/streaming.h"

namespace nd {

FeedForward FeedForward::load(const WeightLoader& w, int64_t dim) {
  const int64_t inner = dim * 4;
  FeedForward ff;
  ff.proj_ = Linear::load(w.child("net").child("0").child("proj"), dim, inner * 2);
  ff.out_ = Linear::load(w.child("net").child("2"), inner, dim);
  return ff;
}

at::Tensor FeedForward::forward(const at::Tensor& x) const {
  // Ref: diffusers activations.py, GEGLU: hidden, gate = proj(x).chunk(2, -1); hidden * gelu(gate).
  return out_.forward(geglu(proj_.forward(x)));
}

void FeedForward::apply(const ParameterFn& fn) {
  proj_.apply(fn);
  out_.apply(fn);
}

BasicTransformerBlock BasicTransformerBlock::load(const WeightLoader& w,
                                                  const BasicTransformerBlockConfig& c) {
  BasicTransformerBlock b;
  b.config_ = c;
  b.norm1_ = LayerNorm::load(w.child("norm1"), c.dim, c.norm_eps);
  b.norm2_ = LayerNorm::load(w.child("norm2"), c.dim, c.norm_eps);
  b.norm3_ = LayerNorm::load(w.child("norm3"), c.dim, c.norm_eps);
  AttentionConfig attn;
  attn.query_dim = c.dim;
  attn.heads = c.num_attention_heads;
  attn.dim_head = c.attention_head_dim;
  attn.qkv_bias = c.attention_bias;
  attn.cross_attention_dim = c.only_cross_attention ? c.cross_attention_dim : 0;
  b.attn1_ = Attention::load(w.child("attn1"), attn);
  attn.cross_attention_dim = c.cross_attention_dim;
  b.attn2_ = Attention::load(w.child("attn2"), attn);
  b.ff_ = FeedForward::load(w.child("ff"), c.dim);
  return b;
}

at::Tensor BasicTransformerBlock::forward(const at::Tensor& x, const EncoderContext& context) const {
  stream_in(this);
  // Ref: diffusers attention.py, BasicTransformerBlock.forward with norm_type="layer_norm".
  at::Tensor h = x + attn1_.forward(norm1_.forward(x),
                                    config_.only_cross_attention ? context : EncoderContext());
  h = h + attn2_.forward(norm2_.forward(h), context);
  return h + ff_.forward(norm3_.forward(h));
}

void BasicTransformerBlock::for_each_attention(const AttentionVisitor& visit) {
  visit(attn1_);
  visit(attn2_);
}

void BasicTransformerBlock::apply(const ParameterFn& fn) {
  norm1_.apply(fn);
  norm2_.apply(fn);
  norm3_.apply(fn);
  attn1_.apply(fn);
  attn2_.apply(fn);
  ff_.apply(fn);
}

}  // namespace nd
