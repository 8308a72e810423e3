#include "models/activations.h"

#include <ATen/ATen.h>

#include "core/errors.h"

namespace nd {

Activation parse_activation(const std::string& name, const std::string& key,
                            const std::string& origin) {
  if (name == "quick_gelu") return Activation::QuickGelu;
  if (name == "gelu") return Activation::Gelu;
  // Ref: transformers activations.py: gelu_new and gelu_pytorch_tanh are both the tanh form.
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") {
    return Activation::GeluTanh;
  }
  if (name == "silu" || name == "swish") return Activation::Silu;
  if (name == "relu") return Activation::Relu;
  throw ValueError("unsupported " + key + "=\"" + name + "\" in " + origin);
}

at::Tensor apply_activation(Activation act, const at::Tensor& x) {
  switch (act) {
    // Ref: transformers QuickGELUActivation: x * sigmoid(1.702 * x).
    case Activation::QuickGelu: return x * at::sigmoid(x * 1.702);
    case Activation::Gelu: return at::gelu(x);
    case Activation::GeluTanh: return at::gelu(x, "tanh");
    case Activation::Silu: return at::silu(x);
    case Activation::Relu: return at::relu(x);
  }
  return x;
}

}  // namespace nd
