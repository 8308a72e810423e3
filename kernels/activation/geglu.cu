#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/element_access.cuh"
#include "nd_kernels/activation.h"

namespace nd::kernels {
namespace {

using namespace detail;

// Exact (erf) GELU, as torch.nn.functional.gelu's default that diffusers' GEGLU uses; fp32 math.
__device__ inline float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

template <typename T>
__global__ void geglu_kernel(const T* __restrict__ input, T* __restrict__ output, int64_t rows,
                             int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / cols, col = i - row * cols;
    const T* in_row = input + row * 2 * cols;
    output[i] = from_float<T>(to_float(in_row[col]) * gelu_erf(to_float(in_row[cols + col])));
  }
}

template <typename T>
cudaError_t launch(const GegluParams& p, cudaStream_t stream) {
  const int64_t total = p.rows * p.cols;
  if (total == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
  geglu_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(p.input),
                                                 static_cast<T*>(p.output), p.rows, p.cols);
  return cudaGetLastError();
}

}  // namespace

cudaError_t geglu(const GegluParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.cols < 0 || (p.rows * p.cols > 0 && (!p.input || !p.output))) {
    return cudaErrorInvalidValue;
  }
  switch (p.type) {
    case ElementType::kFloat32: return launch<float>(p, stream);
    case ElementType::kFloat16: return launch<__half>(p, stream);
    case ElementType::kBFloat16: return launch<__nv_bfloat16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace nd::kernels
