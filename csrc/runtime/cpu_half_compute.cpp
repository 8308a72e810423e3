#include "runtime/cpu_half_compute.h"

#include <ATen/cpu/Utils.h>

#include <atomic>
#include <initializer_list>

#include "runtime/named_modes.h"

namespace nd {
namespace {

const NamedModes<CpuHalfCompute>& mode_names() {
  static const NamedModes<CpuHalfCompute> names{
      "CPU half-precision compute mode",
      {{"auto", CpuHalfCompute::kAuto}, {"float32", CpuHalfCompute::kFloat32}, {"native", CpuHalfCompute::kNative}}};
  return names;
}

std::atomic<CpuHalfCompute>& current_mode() {
  static std::atomic<CpuHalfCompute> mode{mode_names().from_environment("ND_CPU_HALF_COMPUTE")};
  return mode;
}

// cpuinfo's flags as PyTorch reports them; a key it does not know counts as absent.
bool cpu_has_any(std::initializer_list<const char*> flags) {
  static const auto capabilities = at::cpu::get_cpu_capabilities();
  for (const char* flag : flags) {
    const auto found = capabilities.find(flag);
    if (found != capabilities.end() && found->second.isBool() && found->second.toBool()) return true;
  }
  return false;
}

}  // namespace

CpuHalfCompute cpu_half_compute_mode() { return current_mode().load(); }
void set_cpu_half_compute_mode(CpuHalfCompute mode) { current_mode().store(mode); }

CpuHalfCompute parse_cpu_half_compute_mode(const std::string& text) { return mode_names().parse(text); }
std::string to_string(CpuHalfCompute mode) { return mode_names().name(mode); }

bool cpu_has_native_arithmetic(at::ScalarType dtype) {
  static const bool bfloat16 = cpu_has_any({"avx512_bf16", "avx512bf16", "amx_bf16"});
  static const bool float16 = cpu_has_any({"amx_fp16"});
  switch (dtype) {
    case at::kBFloat16: return bfloat16;
    case at::kHalf: return float16;
    default: return true;
  }
}

bool computes_in_float32(const at::Tensor& x) {
  if (!x.defined() || !x.device().is_cpu()) return false;
  const at::ScalarType dtype = x.scalar_type();
  if (dtype != at::kHalf && dtype != at::kBFloat16) return false;
  switch (cpu_half_compute_mode()) {
    case CpuHalfCompute::kFloat32: return true;
    case CpuHalfCompute::kNative: return false;
    case CpuHalfCompute::kAuto: return !cpu_has_native_arithmetic(dtype);
  }
  return false;
}

at::Tensor as_float32(const at::Tensor& t) {
  if (!t.defined()) return t;
  const at::ScalarType dtype = t.scalar_type();
  return dtype == at::kHalf || dtype == at::kBFloat16 ? t.to(at::kFloat) : t;
}

}  // namespace nd
