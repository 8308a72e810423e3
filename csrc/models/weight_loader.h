// Walks a state dict the way the module tree is built: `loader.child("encoder").child("layers.0")`
// then `get("weight", shape)` reads "encoder.layers.0.weight". Loading is a walk over the
// checkpoint's own key tree, never a renaming table (STYLE habit 3).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "io/state_dict.h"

namespace nd {

class WeightLoader {
 public:
  // `origin` names the checkpoint in errors. `dtype` converts floating-point parameters; unset
  // keeps each tensor's stored dtype (transformers' dtype="auto").
  WeightLoader(const io::StateDict& state_dict, std::string origin,
               std::optional<at::ScalarType> dtype);

  WeightLoader child(const std::string& name) const;
  bool has(const std::string& name) const;
  // Missing key or wrong shape -> ValueError naming the full key and the checkpoint.
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape) const;
  const std::string& prefix() const { return prefix_; }
  const std::string& origin() const { return shared_->origin; }

 private:
  struct Shared {
    const io::StateDict* state_dict;
    std::string origin;
    std::optional<at::ScalarType> dtype;
    at::ScalarType floating_dtype;  // the checkpoint's: non-floating weights are cast to it
  };
  WeightLoader(std::shared_ptr<const Shared> shared, std::string prefix);

  std::shared_ptr<const Shared> shared_;
  std::string prefix_;
};

// The floating dtype of a checkpoint: the dtype of its first floating tensor (float32 if none).
at::ScalarType stored_floating_dtype(const io::StateDict& state_dict);

}  // namespace nd
