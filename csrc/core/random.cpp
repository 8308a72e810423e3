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
  // CPU noise for a CUDA tensor is drawn into pinned memory, so that its copy is queued like any
  // kernel: a denoising step that draws noise (DDPM, Euler Ancestral, SDE solvers) never waits for
  // the GPU.
  const bool staged = rand_device.is_cpu() && device.is_cuda();
  const auto options = at::TensorOptions().dtype(dtype).device(rand_device).pinned_memory(staged);
  const auto to_device = [&](const at::Tensor& noise) { return noise.to(device, /*non_blocking=*/true); };
  if (generators.empty()) return to_device(at::randn(shape, options));
  if (generators.size() == 1) return to_device(at::randn(shape, generators.front(), options));
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
  for (const at::Generator& g : generators) items.push_back(at::randn(item_shape, g, options.pinned_memory(false)));
  at::Tensor noise = at::empty(shape, options);
  at::cat_out(noise, items, 0);
  return to_device(noise);
}

}  // namespace nd
