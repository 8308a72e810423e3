#include "models/layers.h"

#include <ATen/ATen.h>

#include "core/errors.h"
#include "runtime/cpu_half_compute.h"
#include "runtime/fused_ops.h"
#include "runtime/memory_format.h"

namespace nd {

ParameterFn move_and_cast(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype) {
  return [device, dtype](const at::Tensor& t) {
    at::Tensor out = t;
    if (device) out = out.to(*device);
    if (dtype && at::isFloatingType(out.scalar_type())) out = out.to(*dtype);
    return in_parameter_layout(out);
  };
}

Linear Linear::load(const WeightLoader& w, int64_t in_features, int64_t out_features,
                    bool with_bias) {
  Linear layer;
  layer.weight = w.get("weight", {out_features, in_features});
  if (with_bias) layer.bias = w.get("bias", {out_features});
  return layer;
}

at::Tensor Linear::forward(const at::Tensor& x) const {
  return compute_in_float32_where_needed(
      [](const at::Tensor& x, const at::Tensor& weight, const auto& bias) { return at::linear(x, weight, bias); },
      x, weight, bias);
}

void Linear::apply(const ParameterFn& fn) {
  weight = fn(weight);
  if (bias) bias = fn(*bias);
}

LayerNorm LayerNorm::load(const WeightLoader& w, int64_t dim, double eps) {
  return LayerNorm{w.get("weight", {dim}), w.get("bias", {dim}), eps};
}

at::Tensor LayerNorm::forward(const at::Tensor& x) const { return layer_norm(x, weight, bias, eps); }

void LayerNorm::apply(const ParameterFn& fn) {
  weight = fn(weight);
  bias = fn(bias);
}

Conv2d Conv2d::load(const WeightLoader& w, int64_t in_channels, int64_t out_channels,
                    int64_t kernel_size, int64_t stride, int64_t padding, bool with_bias) {
  Conv2d layer;
  layer.weight = w.get("weight", {out_channels, in_channels, kernel_size, kernel_size});
  if (with_bias) layer.bias = w.get("bias", {out_channels});
  layer.stride = stride;
  layer.padding = padding;
  return layer;
}

at::Tensor Conv2d::forward(const at::Tensor& x) const {
  return compute_in_float32_where_needed(
      [this](const at::Tensor& x, const at::Tensor& weight, const auto& bias) {
        return at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
      },
      x, weight, bias);
}

void Conv2d::apply(const ParameterFn& fn) {
  weight = fn(weight);
  if (bias) bias = fn(*bias);
}

GroupNorm GroupNorm::load(const WeightLoader& w, int64_t num_groups, int64_t channels, double eps) {
  if (num_groups <= 0 || channels % num_groups != 0) {
    throw ValueError("GroupNorm '" + w.prefix() + "': " + std::to_string(channels) +
                     " channels are not divisible into " + std::to_string(num_groups) +
                     " groups (norm_num_groups in " + w.origin() + ")");
  }
  return GroupNorm{w.get("weight", {channels}), w.get("bias", {channels}), num_groups, eps};
}

at::Tensor GroupNorm::forward(const at::Tensor& x) const { return group_norm(x, num_groups, weight, bias, eps); }

at::Tensor GroupNorm::forward(const at::Tensor& x, const at::Tensor& add, bool apply_silu) const {
  return group_norm(x, num_groups, weight, bias, eps, add, apply_silu);
}

void GroupNorm::apply(const ParameterFn& fn) {
  weight = fn(weight);
  bias = fn(bias);
}

Embedding Embedding::load(const WeightLoader& w, int64_t num_embeddings, int64_t dim) {
  return Embedding{w.get("weight", {num_embeddings, dim})};
}

at::Tensor Embedding::forward(const at::Tensor& ids) const { return at::embedding(weight, ids); }

void Embedding::apply(const ParameterFn& fn) { weight = fn(weight); }

}  // namespace nd
