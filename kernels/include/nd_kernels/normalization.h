// Normalization kernels, memory-bound, statistics in fp32 with Welford/Chan merging (stable where
// E[x^2] - E[x]^2 in fp32 is not: a VAE group holds 4M elements at 512x512).
//
// group_norm: torch.nn.GroupNorm as diffusers' ResnetBlock2D uses it, with its neighbours fused:
// an optional per-(n, c) `add` applied before the statistics (norm2's input h + temb[:, :, None,
// None]) and an optional SiLU after the affine (nonlinearity(norm(h))). One read for the
// statistics, one read and one write for the output, split over many blocks per group.
// Ref: diffusers models/resnet.py, ResnetBlock2D.forward.
//
// layer_norm: torch.nn.LayerNorm over the last dim of a row-major [rows, cols] matrix, one warp
// per row (transformer blocks' norm1/2/3, CLIP's layer norms).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "nd_kernels/activation.h"  // ElementType, shared by every kernel header

namespace nd::kernels {

struct GroupNormParams {
  const void* input;  // [N, C, H, W] contiguous, or [N, H, W, C] contiguous if channels_last
  void* output;       // same shape and layout as input; may be input itself (in place)
  const void* gamma;  // [C], or null for 1
  const void* beta;   // [C], or null for 0
  const void* add;    // [N, C] contiguous, or null: input[n, c, :, :] + add[n, c] is normalised
  // group_norm_workspace_bytes(params) bytes of device memory, 16-byte aligned, used only by
  // this call on `stream`; null lets the call take it from the stream-ordered allocator
  // (cudaMallocAsync / cudaFreeAsync, no synchronization).
  void* workspace;
  int64_t batch;     // N
  int64_t channels;  // C
  int64_t height;    // H
  int64_t width;     // W
  int64_t num_groups;  // divides C
  float eps;           // added to the biased variance, as torch
  bool channels_last;
  bool apply_silu;   // output = silu(group_norm(input))
  ElementType type;  // of input, output, gamma, beta and add
};

// Device bytes group_norm needs for `params` (partial statistics per block); 0 when the
// arguments are invalid or there is nothing to normalise.
size_t group_norm_workspace_bytes(const GroupNormParams& params);

// Returns cudaErrorInvalidValue for malformed arguments (null input/output, negative sizes,
// num_groups <= 0 or not dividing C, negative or non-finite eps), cudaErrorNotSupported for
// groups above 2^30 elements or more than 2^31 - 1 (n, group) pairs, otherwise the status of the
// launches. Validates before touching the device; never synchronizes.
cudaError_t group_norm(const GroupNormParams& params, cudaStream_t stream);

struct LayerNormParams {
  const void* input;  // [rows, cols]; row r starts at input + r * input_row_stride
  void* output;       // [rows, cols]; row r starts at output + r * output_row_stride
  const void* gamma;  // [cols], or null for 1
  const void* beta;   // [cols], or null for 0
  int64_t rows;
  int64_t cols;
  int64_t input_row_stride;   // elements, >= cols when rows > 1
  int64_t output_row_stride;  // elements, >= cols when rows > 1
  float eps;
  ElementType type;  // of input, output, gamma and beta
};

// Returns cudaErrorInvalidValue for malformed arguments (null input/output, negative sizes, row
// strides below cols, negative or non-finite eps), cudaErrorNotSupported for cols above
// 2^31 - 1, otherwise the launch status. Validates before touching the device; never
// synchronizes.
cudaError_t layer_norm(const LayerNormParams& params, cudaStream_t stream);

}  // namespace nd::kernels
