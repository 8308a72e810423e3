#include "core/random.h"

#include <ATen/ATen.h>

#include "core/errors.h"

namespace nd {

at::Tensor randn_tensor(at::IntArrayRef shape, const std::vector<at::Generator>& generators,
                        c10::Device device, at::ScalarType dtype) {
  const c10::Device rand_device = generators.empty() ? device : generators.front().device();
  if (rand_device.type() != device.type() && rand_device.type() != c10::kCPU) {
    // Ref: diffusers randn_tensor: a CUDA generator cannot draw CPU noise.
    throw ValueError("Cannot generate a " + device.str() + " tensor from a generator of type " +
                     rand_device.str() + ".");
  }
  const auto options = at::TensorOptions().dtype(dtype).device(rand_device);
  if (generators.empty()) return at::randn(shape, options).to(device);
  if (generators.size() == 1) return at::randn(shape, generators.front(), options).to(device);
  if (shape.empty() || static_cast<int64_t>(generators.size()) != shape[0]) {
    throw ValueError("You have passed a list of generators of length " +
                     std::to_string(generators.size()) + ", but requested an effective batch size of " +
                     std::to_string(shape.empty() ? 0 : shape[0]) +
                     ". Make sure the batch size matches the length of the generators.");
  }
  std::vector<int64_t> item_shape(shape.begin(), shape.end());
  item_shape[0] = 1;
  std::vector<at::Tensor> items;
  items.reserve(generators.size());
  for (const at::Generator& g : generators) items.push_back(at::randn(item_shape, g, options));
  return at::cat(items, 0).to(device);
}

}  // namespace nd
