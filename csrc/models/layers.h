// torch.nn's basic layers as plain parameter holders with a forward: Linear, LayerNorm,
// Embedding. Each is loaded from the checkpoint keys torch.nn would use ("weight", "bias").
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>

#include "models/weight_loader.h"

namespace nd {

// Applies `fn` to every parameter a module owns, replacing it with the result; `.to()` and
// memory accounting are built on it.
using ParameterFn = std::function<at::Tensor(const at::Tensor&)>;

struct Linear {
  at::Tensor weight;               // [out_features, in_features]
  std::optional<at::Tensor> bias;  // [out_features]

  static Linear load(const WeightLoader& w, int64_t in_features, int64_t out_features,
                     bool with_bias = true);
  at::Tensor forward(const at::Tensor& x) const;
  void apply(const ParameterFn& fn);
};

struct LayerNorm {
  at::Tensor weight;  // [dim]
  at::Tensor bias;    // [dim]
  double eps = 1e-5;

  static LayerNorm load(const WeightLoader& w, int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) const;
  void apply(const ParameterFn& fn);
};

struct Embedding {
  at::Tensor weight;  // [num_embeddings, dim]

  static Embedding load(const WeightLoader& w, int64_t num_embeddings, int64_t dim);
  at::Tensor forward(const at::Tensor& ids) const;
  void apply(const ParameterFn& fn);
};

}  // namespace nd
