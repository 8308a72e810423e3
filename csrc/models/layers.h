// torch.nn's basic layers as plain parameter holders with a forward: Linear, LayerNorm,
// Embedding. Each is loaded from the checkpoint keys torch.nn would use ("weight", "bias").
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <optional>

#include "models/weight_loader.h"

namespace nd {

// Applies `fn` to every parameter a module owns, replacing it with the result; `.to()` and
// memory accounting are built on it.
using ParameterFn = std::function<at::Tensor(const at::Tensor&)>;

// A module's parameter visitor, type-erased.
using ApplyFn = std::function<void(const ParameterFn&)>;
// Reports each streamable block of a model (sequential offloading moves them one at a time): the
// block's address, which its forward passes to stream_in on entry, and its parameter visitor.
using UnitVisitor = std::function<void(const void* unit, ApplyFn apply)>;

template <typename Module>
void visit_unit(const UnitVisitor& visit, Module& module) {
  visit(&module, [&module](const ParameterFn& fn) { module.apply(fn); });
}

// The ParameterFn behind every model's .to(): moves to `device`, casts floating tensors to `dtype`.
ParameterFn move_and_cast(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype);

// Parameter count of any module with apply(); the visit does not change the module.
template <typename Module>
int64_t count_parameters(const Module& module) {
  int64_t total = 0;
  const_cast<Module&>(module).apply([&](const at::Tensor& t) {
    total += t.numel();
    return t;
  });
  return total;
}

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

struct Conv2d {
  at::Tensor weight;               // [out_channels, in_channels, k, k]
  std::optional<at::Tensor> bias;  // [out_channels]
  int64_t stride = 1;
  int64_t padding = 0;

  static Conv2d load(const WeightLoader& w, int64_t in_channels, int64_t out_channels,
                     int64_t kernel_size, int64_t stride = 1, int64_t padding = 0,
                     bool with_bias = true);
  at::Tensor forward(const at::Tensor& x) const;
  void apply(const ParameterFn& fn);
};

struct GroupNorm {
  at::Tensor weight;  // [channels]
  at::Tensor bias;    // [channels]
  int64_t num_groups = 32;
  double eps = 1e-5;

  // Checks channels % groups == 0 so a bad config fails at load, naming the module.
  static GroupNorm load(const WeightLoader& w, int64_t num_groups, int64_t channels, double eps);
  at::Tensor forward(const at::Tensor& x) const;
  // silu(norm(x + add[:, :, None, None])), one fused pass on the GPU; add: [N, C] or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& add, bool apply_silu) const;
  void apply(const ParameterFn& fn);
};

struct Embedding {
  at::Tensor weight;  // [num_embeddings, dim]

  static Embedding load(const WeightLoader& w, int64_t num_embeddings, int64_t dim);
  at::Tensor forward(const at::Tensor& ids) const;
  void apply(const ParameterFn& fn);
};

}  // namespace nd
