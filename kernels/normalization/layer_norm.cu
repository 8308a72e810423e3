// LayerNorm over the last dim of a row-major [rows, cols] matrix; see nd_kernels/normalization.h.
// One warp per row: the statistics pass reads the row once (Welford moments per vector, merged
// across lanes), the normalize pass reads it again, from L1/L2 for the widths Stable Diffusion
// uses (320-2048 columns).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "common/element_access.cuh"
#include "common/welford.cuh"
#include "nd_kernels/normalization.h"

namespace nd::kernels {
namespace {

using namespace detail;

constexpr int kRowsPerBlock = 8;  // one warp each
constexpr int kThreads = kRowsPerBlock * 32;

// The warp's merged moments, broadcast from lane 0 so every lane uses bit-identical statistics.
__device__ inline Moments warp_all_reduce(Moments m) {
  m = warp_reduce(m);
  return {__shfl_sync(0xffffffffu, m.count, 0), __shfl_sync(0xffffffffu, m.mean, 0),
          __shfl_sync(0xffffffffu, m.m2, 0)};
}

// ---- kernel --------------------------------------------------------------------------------

// Grid ceil(rows / kRowsPerBlock); warp w of block b normalises row b * kRowsPerBlock + w.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) layer_norm_kernel(const LayerNormParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= p.rows) return;  // the whole warp leaves together; no block barrier follows
  const T* x = static_cast<const T*>(p.input) + row * p.input_row_stride;
  T* y = static_cast<T*>(p.output) + row * p.output_row_stride;
  const T* gamma = static_cast<const T*>(p.gamma);
  const T* beta = static_cast<const T*>(p.beta);
  const int cols = static_cast<int>(p.cols);

  Moments m{0.f, 0.f, 0.f};
  for (int c = lane * kVec; c < cols; c += 32 * kVec) {
    float v[kVec];
    load_vec<T, kVec>(x + c, v);
    m = merge(m, moments_of<kVec>(v));
  }
  m = warp_all_reduce(m);
  const float mean = m.mean;
  const float rstd = rsqrtf(m.m2 / m.count + p.eps);  // biased variance, as torch

  for (int c = lane * kVec; c < cols; c += 32 * kVec) {
    float v[kVec];
    load_vec<T, kVec>(x + c, v);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      float r = (v[e] - mean) * rstd;
      if (gamma) r *= to_float(gamma[c + e]);
      if (beta) r += to_float(beta[c + e]);
      v[e] = r;
    }
    store_vec<T, kVec>(y + c, v);
  }
}

// ---- host side -----------------------------------------------------------------------------

cudaError_t check_arguments(const LayerNormParams& p) {
  if (p.type != ElementType::kFloat32 && p.type != ElementType::kFloat16 &&
      p.type != ElementType::kBFloat16) {
    return cudaErrorInvalidValue;
  }
  if (p.rows < 0 || p.cols < 0) return cudaErrorInvalidValue;
  if (!std::isfinite(p.eps) || p.eps < 0.f) return cudaErrorInvalidValue;
  if (p.rows == 0 || p.cols == 0) return cudaSuccess;
  if (!p.input || !p.output) return cudaErrorInvalidValue;
  if (p.rows > 1 && (p.input_row_stride < p.cols || p.output_row_stride < p.cols)) {
    return cudaErrorInvalidValue;  // rows would overlap
  }
  // Column indices are int with a vector step of headroom; the grid is at most 2^31 - 1 blocks.
  if (p.cols > INT_MAX - 1024 || p.rows / kRowsPerBlock >= INT_MAX) return cudaErrorNotSupported;
  return cudaSuccess;
}

// Widest vector (at most 16 bytes) that divides cols and keeps every row start aligned.
template <typename T>
int vector_width(const LayerNormParams& p) {
  for (int vec = 16 / static_cast<int>(sizeof(T)); vec > 1; vec /= 2) {
    const uintptr_t bytes = vec * sizeof(T);
    if (p.cols % vec == 0 && p.input_row_stride % vec == 0 && p.output_row_stride % vec == 0 &&
        reinterpret_cast<uintptr_t>(p.input) % bytes == 0 &&
        reinterpret_cast<uintptr_t>(p.output) % bytes == 0) {
      return vec;
    }
  }
  return 1;
}

template <typename T, int kVec>
cudaError_t launch(const LayerNormParams& p, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((p.rows + kRowsPerBlock - 1) / kRowsPerBlock);
  layer_norm_kernel<T, kVec><<<blocks, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_typed(const LayerNormParams& p, cudaStream_t stream) {
  const int vec = vector_width<T>(p);
  if constexpr (sizeof(T) == 2) {  // 8 x 16-bit = 16 bytes; fp32 stops at 4
    if (vec == 8) return launch<T, 8>(p, stream);
  }
  if (vec == 4) return launch<T, 4>(p, stream);
  if (vec == 2) return launch<T, 2>(p, stream);
  return launch<T, 1>(p, stream);
}

}  // namespace

cudaError_t layer_norm(const LayerNormParams& p, cudaStream_t stream) {
  const cudaError_t err = check_arguments(p);
  if (err != cudaSuccess || p.rows == 0 || p.cols == 0) return err;
  switch (p.type) {
    case ElementType::kFloat32: return launch_typed<float>(p, stream);
    case ElementType::kFloat16: return launch_typed<__half>(p, stream);
    case ElementType::kBFloat16: return launch_typed<__nv_bfloat16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace nd::kernels
