// Activation functions by the names configs use (transformers' ACT2FN, diffusers'
// activations.py), so a config's string picks the same math as the reference.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace nd {

enum class Activation { QuickGelu, Gelu, GeluTanh, Silu, Relu };

// Unknown names -> ValueError naming `key` and `origin` (the config file).
Activation parse_activation(const std::string& name, const std::string& key,
                            const std::string& origin);
at::Tensor apply_activation(Activation act, const at::Tensor& x);

}  // namespace nd
