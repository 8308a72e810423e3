#include "models/layers.h"

#include <ATen/ATen.h>

namespace nd {

Linear Linear::load(const WeightLoader& w, int64_t in_features, int64_t out_features,
                    bool with_bias) {
  Linear layer;
  layer.weight = w.get("weight", {out_features, in_features});
  if (with_bias) layer.bias = w.get("bias", {out_features});
  return layer;
}

at::Tensor Linear::forward(const at::Tensor& x) const {
  return bias ? at::linear(x, weight, *bias) : at::linear(x, weight);
}

void Linear::apply(const ParameterFn& fn) {
  weight = fn(weight);
  if (bias) bias = fn(*bias);
}

LayerNorm LayerNorm::load(const WeightLoader& w, int64_t dim, double eps) {
  return LayerNorm{w.get("weight", {dim}), w.get("bias", {dim}), eps};
}

at::Tensor LayerNorm::forward(const at::Tensor& x) const {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

void LayerNorm::apply(const ParameterFn& fn) {
  weight = fn(weight);
  bias = fn(bias);
}

Embedding Embedding::load(const WeightLoader& w, int64_t num_embeddings, int64_t dim) {
  return Embedding{w.get("weight", {num_embeddings, dim})};
}

at::Tensor Embedding::forward(const at::Tensor& ids) const { return at::embedding(weight, ids); }

void Embedding::apply(const ParameterFn& fn) { weight = fn(weight); }

}  // namespace nd
