// Noise drawn exactly as diffusers' randn_tensor (utils/torch_utils.py): on the generator's
// device (CPU when none), one draw per batch item when a list of generators is given, then moved.
// This is what makes "same seed, same image" hold across implementations and devices.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <vector>

namespace nd {

// `generators`: empty (global RNG), one (whole tensor from it), or one per batch item.
at::Tensor randn_tensor(at::IntArrayRef shape, const std::vector<at::Generator>& generators,
                        c10::Device device, at::ScalarType dtype);

}  // namespace nd
