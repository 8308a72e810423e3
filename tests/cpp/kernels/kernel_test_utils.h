// What the kernel tests share: the device check, the tolerance table (relative L2 against a
// float64 host reference, per element type), host-side element conversion, a fixed RNG and the
// device buffers of one test.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "nd_kernels/activation.h"  // ElementType

namespace nd::kernels::kernel_testing {

inline bool have_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

// The device memory of one test, freed when the test returns, an early ASSERT return included.
// Each allocation returns null on failure (and for an empty upload: an absent optional operand).
class DeviceBuffers {
 public:
  DeviceBuffers() = default;
  DeviceBuffers(const DeviceBuffers&) = delete;
  DeviceBuffers& operator=(const DeviceBuffers&) = delete;
  ~DeviceBuffers() {
    for (void* p : owned_) cudaFree(p);
  }

  void* raw(size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) return nullptr;
    owned_.push_back(p);
    return p;
  }
  template <typename T>
  T* upload(const std::vector<T>& host) {
    if (host.empty()) return nullptr;
    T* p = static_cast<T*>(raw(host.size() * sizeof(T)));
    const size_t bytes = host.size() * sizeof(T);
    if (p && cudaMemcpy(p, host.data(), bytes, cudaMemcpyHostToDevice) != cudaSuccess) return nullptr;
    return p;
  }
  // All-ones bytes: NaN in every float type, so an element the kernel never writes fails the check.
  template <typename T>
  T* poisoned(size_t count) {
    T* p = static_cast<T*>(raw(count * sizeof(T)));
    if (p && cudaMemset(p, 0xff, count * sizeof(T)) != cudaSuccess) return nullptr;
    return p;
  }
  // Waits for the device, then copies `count` elements back (empty if either step fails).
  template <typename T>
  static std::vector<T> download(const T* device, size_t count) {
    std::vector<T> host(count);
    if (cudaDeviceSynchronize() != cudaSuccess ||
        cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) {
      return {};
    }
    return host;
  }

 private:
  std::vector<void*> owned_;
};

// Relative L2 bars against float64: fp32 math leaves ~1e-7; fp16 and bf16 are bounded by the
// rounding of inputs and outputs themselves (2^-12 and 2^-9 relative).
inline double tolerance(ElementType type) {
  switch (type) {
    case ElementType::kFloat32: return 1e-5;
    case ElementType::kFloat16: return 1e-3;
    case ElementType::kBFloat16: return 1e-2;
  }
  return 0;
}

inline float to_float(float v) { return v; }
inline float to_float(__half v) { return __half2float(v); }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
T from_float(float v);
template <>
inline float from_float<float>(float v) { return v; }
template <>
inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// splitmix64: fast and fixed, so the largest cases (tens of millions of values) cost little host time.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
  float unit_variance() { return (2.f * uniform() - 1.f) * 1.7320508f; }
};

}  // namespace nd::kernels::kernel_testing
