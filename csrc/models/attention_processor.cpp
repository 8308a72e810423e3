#include "models/attention_processor.h"

#include <ATen/ATen.h>

namespace nd {

Attention Attention::load(const WeightLoader& w, const AttentionConfig& c) {
  Attention a;
  a.config_ = c;
  const int64_t inner = c.heads * c.dim_head;
  const int64_t kv_dim = c.cross_attention_dim > 0 ? c.cross_attention_dim : c.query_dim;
  if (c.norm_num_groups > 0) {
    a.group_norm_ = GroupNorm::load(w.child("group_norm"), c.norm_num_groups, c.query_dim, c.eps);
  }
  // Checkpoints from before diffusers 0.14 name the VAE attention query/key/value/proj_attn;
  // diffusers converts them on load (_convert_deprecated_attention_blocks), and so do we.
  const bool legacy = !w.has("to_q.weight") && w.has("query.weight");
  a.to_q_ = Linear::load(w.child(legacy ? "query" : "to_q"), c.query_dim, inner, c.qkv_bias);
  a.to_k_ = Linear::load(w.child(legacy ? "key" : "to_k"), kv_dim, inner, c.qkv_bias);
  a.to_v_ = Linear::load(w.child(legacy ? "value" : "to_v"), kv_dim, inner, c.qkv_bias);
  a.to_out_ = Linear::load(legacy ? w.child("proj_attn") : w.child("to_out").child("0"), inner,
                           c.query_dim, c.out_bias);
  return a;
}

at::Tensor Attention::forward(const at::Tensor& hidden, const at::Tensor& context) const {
  const bool spatial = hidden.dim() == 4;
  const int64_t batch = hidden.size(0);
  at::Tensor x = hidden;
  int64_t channels = 0, height = 0, width = 0;
  if (spatial) {
    channels = hidden.size(1), height = hidden.size(2), width = hidden.size(3);
    x = hidden.view({batch, channels, height * width}).transpose(1, 2);  // [B, HW, C]
  }
  if (group_norm_) x = group_norm_->forward(x.transpose(1, 2)).transpose(1, 2);
  const at::Tensor& kv_input = context.defined() ? context : x;
  const auto heads = [&](const at::Tensor& t) {
    return t.view({batch, -1, config_.heads, config_.dim_head}).transpose(1, 2);  // [B, h, L, d]
  };
  const at::Tensor q = heads(to_q_.forward(x));
  const at::Tensor k = heads(to_k_.forward(kv_input));
  const at::Tensor v = heads(to_v_.forward(kv_input));
  at::Tensor out = at::scaled_dot_product_attention(q, k, v);
  out = out.transpose(1, 2).reshape({batch, -1, config_.heads * config_.dim_head});  // [B, L, inner]
  out = to_out_.forward(out);
  if (spatial) out = out.transpose(-1, -2).reshape({batch, channels, height, width});
  if (config_.residual_connection) out = out + hidden;
  if (config_.rescale_output_factor != 1.0) out = out / config_.rescale_output_factor;
  return out;
}

void Attention::apply(const ParameterFn& fn) {
  if (group_norm_) group_norm_->apply(fn);
  to_q_.apply(fn);
  to_k_.apply(fn);
  to_v_.apply(fn);
  to_out_.apply(fn);
}

}  // namespace nd
