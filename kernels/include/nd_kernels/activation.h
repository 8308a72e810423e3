// Fused activations. geglu: diffusers' GEGLU feed-forward gate, out = x * gelu(gate) where the
// projection's output row is [x | gate]; one memory-bound pass instead of chunk + gelu + mul
// (three reads and two writes of the activations). Written against memory bandwidth.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nd::kernels {

enum class ElementType { kFloat32, kFloat16, kBFloat16 };

struct GegluParams {
  const void* input;  // [rows, 2 * cols], row-major: value half then gate half
  void* output;       // [rows, cols]
  int64_t rows;
  int64_t cols;
  ElementType type;
};

// Returns the launch status; never synchronizes.
cudaError_t geglu(const GegluParams& params, cudaStream_t stream);

}  // namespace nd::kernels
