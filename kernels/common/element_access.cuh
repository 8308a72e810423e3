// Element conversion and vectorised access shared by the elementwise and normalization kernels:
// fp32 math on fp16/bf16/fp32 storage, moving kVec elements as one (up to 16-byte) access.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace nd::kernels::detail {

template <typename T>
__device__ inline float to_float(T v) { return static_cast<float>(v); }
template <>
__device__ inline float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ inline float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ inline T from_float(float v) { return static_cast<T>(v); }
template <>
__device__ inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// kVec elements moved as one (up to 16-byte) access.
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Vec {
  T v[kVec];
};

template <typename T, int kVec>
__device__ inline void load_vec(const T* p, float (&x)[kVec]) {
  const Vec<T, kVec> v = *reinterpret_cast<const Vec<T, kVec>*>(p);
#pragma unroll
  for (int e = 0; e < kVec; ++e) x[e] = to_float(v.v[e]);
}

template <typename T, int kVec>
__device__ inline void store_vec(T* p, const float (&x)[kVec]) {
  Vec<T, kVec> v;
#pragma unroll
  for (int e = 0; e < kVec; ++e) v.v[e] = from_float<T>(x[e]);
  *reinterpret_cast<Vec<T, kVec>*>(p) = v;
}

}  // namespace nd::kernels::detail
