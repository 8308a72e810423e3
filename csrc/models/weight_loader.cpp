#include "models/weight_loader.h"

#include <ATen/ATen.h>

#include <sstream>

#include "core/errors.h"

namespace nd {
namespace {

std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream out;
  out << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

}  // namespace

WeightLoader::WeightLoader(const io::StateDict& state_dict, std::string origin,
                           std::optional<at::ScalarType> dtype)
    : shared_(std::make_shared<Shared>(Shared{&state_dict, std::move(origin), dtype, stored_floating_dtype(state_dict)})) {}

WeightLoader::WeightLoader(std::shared_ptr<const Shared> shared, std::string prefix)
    : shared_(std::move(shared)), prefix_(std::move(prefix)) {}

WeightLoader WeightLoader::child(const std::string& name) const {
  return WeightLoader(shared_, prefix_ + name + ".");
}

bool WeightLoader::has(const std::string& name) const {
  return shared_->state_dict->count(prefix_ + name) > 0;
}

at::Tensor WeightLoader::get(const std::string& name, const std::vector<int64_t>& shape) const {
  const std::string key = prefix_ + name;
  auto it = shared_->state_dict->find(key);
  if (it == shared_->state_dict->end()) {
    throw ValueError("missing weight '" + key + "' in " + shared_->origin);
  }
  const at::Tensor& stored = it->second;
  if (stored.sizes() != at::IntArrayRef(shape)) {
    throw ValueError("weight '" + key + "' in " + shared_->origin + " has shape " +
                     shape_string(stored.sizes()) + ", expected " + shape_string(shape));
  }
  if (!at::isFloatingType(stored.scalar_type())) {
    // Ref: diffusers copies an integer or bool weight into the model's floating parameter.
    return stored.to(shared_->dtype.value_or(shared_->floating_dtype));
  }
  if (shared_->dtype && stored.scalar_type() != *shared_->dtype) return stored.to(*shared_->dtype);
  return stored;
}

at::ScalarType stored_floating_dtype(const io::StateDict& state_dict) {
  for (const auto& [name, tensor] : state_dict) {
    if (at::isFloatingType(tensor.scalar_type())) return tensor.scalar_type();
  }
  return at::kFloat;
}

}  // namespace nd
