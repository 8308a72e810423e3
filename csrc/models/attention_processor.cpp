#include "models/attention_processor.h"

#include <ATen/ATen.h>

#include <array>
#include <tuple>

#include "core/errors.h"
#include "runtime/fused_ops.h"
#include "offload/streaming.h"

namespace nd {

SpatialNorm SpatialNorm::load(const WeightLoader& w, int64_t f_channels, int64_t zq_channels) {
  SpatialNorm n;
  // Ref: diffusers SpatialNorm.__init__: 32 groups and eps 1e-6, whatever the model's norm_num_groups.
  n.norm_layer_ = GroupNorm::load(w.child("norm_layer"), 32, f_channels, 1e-6);
  n.conv_y_ = Conv2d::load(w.child("conv_y"), zq_channels, f_channels, 1);
  n.conv_b_ = Conv2d::load(w.child("conv_b"), zq_channels, f_channels, 1);
  return n;
}

at::Tensor SpatialNorm::forward(const at::Tensor& f, const at::Tensor& zq_in) const {
  if (!zq_in.defined() || zq_in.dim() != 4 || zq_in.size(0) != f.size(0)) {
    throw ValueError("SpatialNorm needs the quantized latents zq as [batch, channels, height, width]");
  }
  const at::Tensor zq = at::upsample_nearest2d(zq_in, {f.size(2), f.size(3)});  // F.interpolate(size=f)
  return norm_layer_.forward(f) * conv_y_.forward(zq) + conv_b_.forward(zq);
}

void SpatialNorm::apply(const ParameterFn& fn) {
  norm_layer_.apply(fn);
  conv_y_.apply(fn);
  conv_b_.apply(fn);
}

Attention Attention::load(const WeightLoader& w, const AttentionConfig& c) {
  Attention a;
  a.config_ = c;
  const int64_t inner = c.heads * c.dim_head;
  const int64_t kv_dim = c.cross_attention_dim > 0 ? c.cross_attention_dim : c.query_dim;
  if (c.norm_num_groups > 0) {
    a.group_norm_ = GroupNorm::load(w.child("group_norm"), c.norm_num_groups, c.query_dim, c.eps);
  }
  if (c.spatial_norm_dim > 0) a.spatial_norm_ = SpatialNorm::load(w.child("spatial_norm"), c.query_dim, c.spatial_norm_dim);
  if (c.added_kv_proj_dim > 0 && !a.group_norm_) {
    throw ValueError("Attention '" + w.prefix() + "': added key/value projections need a group norm");
  }
  // Checkpoints from before diffusers 0.14 name the VAE attention query/key/value/proj_attn;
  // diffusers converts them on load (_convert_deprecated_attention_blocks), and so do we.
  const bool legacy = !w.has("to_q.weight") && w.has("query.weight");
  a.to_q_ = Linear::load(w.child(legacy ? "query" : "to_q"), c.query_dim, inner, c.qkv_bias);
  if (!c.only_cross_attention) {
    a.to_k_ = Linear::load(w.child(legacy ? "key" : "to_k"), kv_dim, inner, c.qkv_bias);
    a.to_v_ = Linear::load(w.child(legacy ? "value" : "to_v"), kv_dim, inner, c.qkv_bias);
  }
  if (c.added_kv_proj_dim > 0) {
    a.add_k_proj_ = Linear::load(w.child("add_k_proj"), c.added_kv_proj_dim, inner);
    a.add_v_proj_ = Linear::load(w.child("add_v_proj"), c.added_kv_proj_dim, inner);
  }
  a.to_out_ = Linear::load(legacy ? w.child("proj_attn") : w.child("to_out").child("0"), inner,
                           c.query_dim, c.out_bias);
  return a;
}

at::Tensor Attention::split_heads(const at::Tensor& t, int64_t batch) const {
  return t.view({batch, -1, config_.heads, config_.dim_head}).transpose(1, 2);  // [B, h, L, d]
}

namespace {

// The rows of several projections as one: [sum of out_features, in_features] (and bias).
Linear concatenate(std::initializer_list<const Linear*> parts) {
  std::vector<at::Tensor> weights, biases;
  for (const Linear* part : parts) {
    weights.push_back(part->weight);
    if (part->bias) biases.push_back(*part->bias);
  }
  Linear fused;
  fused.weight = at::cat(weights, 0);
  if (!biases.empty()) fused.bias = at::cat(biases, 0);
  return fused;
}

// Projection i of `count` equal ones concatenated in `fused`, as a Linear of its own.
Linear slice(const Linear& fused, int64_t i, int64_t count) {
  const int64_t rows = fused.weight.size(0) / count;
  Linear part;
  part.weight = fused.weight.narrow(0, i * rows, rows).clone();
  if (fused.bias) part.bias = fused.bias->narrow(0, i * rows, rows).clone();
  return part;
}

// Ref: FusedAttnProcessor2_0: torch.split of the fused projection's last dimension.
at::Tensor part_of(const at::Tensor& fused, int64_t i, int64_t count) {
  const int64_t width = fused.size(-1) / count;
  return fused.narrow(-1, i * width, width);
}

}  // namespace

void Attention::fuse_projections() {
  if (add_k_proj_) throw ValueError("`fuse_qkv_projections()` is not supported for models having added KV projections.");
  if (fused_projections()) return;
  // Ref: diffusers Attention.fuse_projections: is_cross_attention decides what fuses.
  if (config_.cross_attention_dim > 0) {
    to_kv_ = concatenate({&*to_k_, &*to_v_});
  } else {
    to_qkv_ = concatenate({&to_q_, &*to_k_, &*to_v_});
    to_q_ = Linear();
  }
  to_k_.reset();
  to_v_.reset();
}

void Attention::unfuse_projections() {
  if (to_qkv_) {
    to_q_ = slice(*to_qkv_, 0, 3);
    to_k_ = slice(*to_qkv_, 1, 3);
    to_v_ = slice(*to_qkv_, 2, 3);
  } else if (to_kv_) {
    to_k_ = slice(*to_kv_, 0, 2);
    to_v_ = slice(*to_kv_, 1, 2);
  }
  to_qkv_.reset();
  to_kv_.reset();
}

std::pair<at::Tensor, at::Tensor> Attention::project_encoder_states(const at::Tensor& states) const {
  stream_in(this);
  if (add_k_proj_) return {add_k_proj_->forward(states), add_v_proj_->forward(states)};
  if (!reads_encoder_states()) throw ValueError("self-attention layers project no encoder states");
  return keys_values_of(states);
}

std::pair<at::Tensor, at::Tensor> Attention::keys_values_of(const at::Tensor& input) const {
  if (to_kv_) {
    const at::Tensor kv = to_kv_->forward(input);
    return {part_of(kv, 0, 2), part_of(kv, 1, 2)};
  }
  return {to_k_->forward(input), to_v_->forward(input)};
}

std::array<at::Tensor, 3> Attention::queries_keys_values(const at::Tensor& x, const EncoderContext& context) const {
  const int64_t batch = x.size(0);
  if (to_qkv_) {
    if (context.states.defined() || context.projected) {
      throw ValueError("a fused self-attention layer got encoder states");
    }
    const at::Tensor qkv = to_qkv_->forward(x);
    return {split_heads(part_of(qkv, 0, 3), batch), split_heads(part_of(qkv, 1, 3), batch),
            split_heads(part_of(qkv, 2, 3), batch)};
  }
  at::Tensor key, value;
  if (context.projected) {
    const EncoderKeyValues::KeyValue& kv = context.projected->of(this);
    key = kv.key, value = kv.value;
  } else {
    std::tie(key, value) = keys_values_of(context.states.defined() ? context.states : x);
  }
  return {split_heads(to_q_.forward(x), batch), split_heads(key, batch), split_heads(value, batch)};
}

at::Tensor Attention::forward(const at::Tensor& hidden, const EncoderContext& context, const at::Tensor& temb) const {
  stream_in(this);
  if (add_k_proj_) return forward_added_kv(hidden, context);
  // Ref: diffusers AttnProcessor2_0.__call__.
  const bool spatial = hidden.dim() == 4;
  const int64_t batch = hidden.size(0);
  at::Tensor x = spatial_norm_ ? spatial_norm_->forward(hidden, temb) : hidden;
  int64_t channels = 0, height = 0, width = 0;
  if (spatial) {
    channels = hidden.size(1), height = hidden.size(2), width = hidden.size(3);
    x = x.view({batch, channels, height * width}).transpose(1, 2);  // [B, HW, C]
  }
  if (group_norm_) x = group_norm_->forward(x.transpose(1, 2)).transpose(1, 2);
  const auto [q, k, v] = queries_keys_values(x, context);
  at::Tensor out = attention(q, k, v);
  out = out.transpose(1, 2).reshape({batch, -1, config_.heads * config_.dim_head});  // [B, L, inner]
  out = to_out_.forward(out);
  if (spatial) out = out.transpose(-1, -2).reshape({batch, channels, height, width});
  if (config_.residual_connection) out = out + hidden;
  if (config_.rescale_output_factor != 1.0) out = out / config_.rescale_output_factor;
  return out;
}

at::Tensor Attention::forward_added_kv(const at::Tensor& hidden, const EncoderContext& context) const {
  // Ref: diffusers AttnAddedKVProcessor2_0.__call__ (no mask: the UNet passes none here).
  if (hidden.dim() != 4) throw ValueError("added key/value attention expects [batch, channels, height, width]");
  const int64_t batch = hidden.size(0);
  const int64_t channels = hidden.size(1);
  at::Tensor x = hidden.view({batch, channels, -1}).transpose(1, 2);  // [B, HW, C]
  at::Tensor k, v;  // [B, h, S, d]
  if (context.projected) {
    if (context.projected->batch() != batch) {
      throw ValueError("projected encoder states have batch " + std::to_string(context.projected->batch()) +
                       ", the sample has " + std::to_string(batch));
    }
    const EncoderKeyValues::KeyValue& kv = context.projected->of(this);
    k = split_heads(kv.key, batch);
    v = split_heads(kv.value, batch);
  } else {
    const at::Tensor encoder = context.states.defined() ? context.states : x;
    if (encoder.size(0) != batch) {
      throw ValueError("encoder_hidden_states has batch " + std::to_string(encoder.size(0)) + ", the sample has " +
                       std::to_string(batch));
    }
    k = split_heads(add_k_proj_->forward(encoder), batch);
    v = split_heads(add_v_proj_->forward(encoder), batch);
  }
  x = group_norm_->forward(x.transpose(1, 2)).transpose(1, 2);
  const at::Tensor q = split_heads(to_q_.forward(x), batch);
  if (!config_.only_cross_attention) {
    // Encoder keys first, then the sample's own: [B, h, S + HW, d].
    k = at::cat({k, split_heads(to_k_->forward(x), batch)}, 2);
    v = at::cat({v, split_heads(to_v_->forward(x), batch)}, 2);
  }
  at::Tensor out = attention(q, k, v);
  out = out.transpose(1, 2).reshape({batch, -1, channels});  // [B, HW, C]
  out = to_out_.forward(out);
  return out.transpose(-1, -2).reshape(hidden.sizes()) + hidden;
}

void Attention::apply(const ParameterFn& fn) {
  if (group_norm_) group_norm_->apply(fn);
  if (spatial_norm_) spatial_norm_->apply(fn);
  if (to_qkv_) {
    to_qkv_->apply(fn);
  } else {
    to_q_.apply(fn);
  }
  if (to_kv_) to_kv_->apply(fn);
  if (to_k_) to_k_->apply(fn);
  if (to_v_) to_v_->apply(fn);
  if (add_k_proj_) add_k_proj_->apply(fn);
  if (add_v_proj_) add_v_proj_->apply(fn);
  to_out_.apply(fn);
}

}  // namespace nd
