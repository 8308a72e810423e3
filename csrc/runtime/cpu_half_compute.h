// Half-precision models on CPUs without half-precision arithmetic. Where a CPU has no native
// float16 (or bfloat16) instructions, PyTorch's CPU convolutions, GEMMs, attention and norms in that
// dtype take reference loops: on an AVX2 EPYC a 320-channel 3x3 convolution at 64x64 is 270x slower
// in float16 than in float32. There the engine computes those ops in float32 and rounds each result
// back to the model's dtype once, at the op's output, which is where PyTorch's own half-precision
// kernels round (they accumulate in float32 too); so results stay within half-precision rounding of
// PyTorch's. Weights are upcast per call, one layer at a time: no second float32 copy of a model is
// kept. Elementwise ops stay in the model's dtype (PyTorch vectorises them through float32 anyway).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace nd {

enum class CpuHalfCompute {
  kAuto,     // float32 for a dtype the CPU has no native arithmetic for (the default)
  kFloat32,  // always float32 (how a machine without native support runs, for comparison)
  kNative,   // always PyTorch's kernels in the model's dtype
};

// Process-wide; ND_CPU_HALF_COMPUTE=auto / float32 / native in the environment sets the start.
CpuHalfCompute cpu_half_compute_mode();
void set_cpu_half_compute_mode(CpuHalfCompute mode);
// "auto", "float32", "native"; anything else throws ValueError naming the value.
CpuHalfCompute parse_cpu_half_compute_mode(const std::string& text);
std::string to_string(CpuHalfCompute mode);

// Whether this CPU computes `dtype` natively, detected once: bfloat16 with AVX512-BF16 or AMX-BF16
// (oneDNN's bfloat16 kernels), float16 with AMX-FP16. AVX512-FP16 alone does not count: measured on
// a Sapphire-Rapids-class core, oneDNN's float16 convolutions there are still slower than float32.
bool cpu_has_native_arithmetic(at::ScalarType dtype);

// Whether an op whose input is `x` computes in float32: a CPU float16/bfloat16 tensor, under the
// current mode.
bool computes_in_float32(const at::Tensor& x);

// `t` as float32 when it is a defined half-precision tensor; anything else unchanged.
at::Tensor as_float32(const at::Tensor& t);
inline at::Tensor as_float32(const std::optional<at::Tensor>& t) { return t ? as_float32(*t) : at::Tensor(); }

// op(x, rest...), computed in float32 and rounded back to x's dtype where computes_in_float32(x).
// Every tensor argument is upcast; non-float ones (a boolean mask) pass unchanged.
template <typename Op, typename... Rest>
at::Tensor compute_in_float32_where_needed(Op&& op, const at::Tensor& x, const Rest&... rest) {
  if (!computes_in_float32(x)) return op(x, rest...);
  return op(as_float32(x), as_float32(rest)...).to(x.scalar_type());
}

}  // namespace nd
