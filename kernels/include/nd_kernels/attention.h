// Fused multi-head attention forward, out = softmax(q k^T * scale) v, FlashAttention-2 style:
// K/V tiles stream through shared memory, the softmax is computed online in fp32 registers and
// the [q_len, kv_len] score matrix never reaches global memory (the VAE mid-block's single head
// at 1024x1024 would otherwise need 16384^2 scores). Written against tensor-core throughput
// (mma.sync m16n8k16, fp32 accumulation) for Stable Diffusion's shapes: head_dim 40/64/80/160 in
// the UNets and CLIP, 512 in the VAE.
// Ref: Dao, "FlashAttention-2" (2023), Algorithm 1; diffusers AttnProcessor2_0
// (models/attention_processor.py), which calls torch's scaled_dot_product_attention.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "nd_kernels/activation.h"  // ElementType, shared by every kernel header

namespace nd::kernels {

// Element strides of one [batch, heads, len, head_dim] operand; head_dim itself is contiguous.
struct AttentionStrides {
  int64_t batch;
  int64_t head;
  int64_t row;
};

// A contiguous [batch, heads, len, head_dim] tensor.
inline AttentionStrides bhld_strides(int64_t heads, int64_t len, int64_t head_dim) {
  return {heads * len * head_dim, len * head_dim, head_dim};
}

// A contiguous [batch, len, heads, head_dim] tensor (diffusers' projection output before its
// transpose(1, 2)), read as [batch, heads, len, head_dim] without a copy.
inline AttentionStrides blhd_strides(int64_t heads, int64_t len, int64_t head_dim) {
  return {len * heads * head_dim, head_dim, heads * head_dim};
}

// Largest head_dim flash_attention_forward accepts; every multiple of 8 up to it is supported.
constexpr int64_t kMaxAttentionHeadDim = 512;

struct FlashAttentionParams {
  const void* q;  // [batch, heads, q_len, head_dim]
  const void* k;  // [batch, heads, kv_len, head_dim]
  const void* v;  // [batch, heads, kv_len, head_dim]
  void* out;      // [batch, heads, q_len, head_dim]; must not overlap q, k or v
  // All four pointers 16-byte aligned and every stride a multiple of 8 elements (true of any
  // view of a contiguous tensor whose head_dim is a multiple of 8); strides of size-1 dims are
  // ignored.
  AttentionStrides q_strides;
  AttentionStrides k_strides;
  AttentionStrides v_strides;
  AttentionStrides out_strides;
  int64_t batch;
  int64_t heads;
  int64_t q_len;
  int64_t kv_len;    // >= 1 whenever there is output to compute
  int64_t head_dim;  // a multiple of 8, at most kMaxAttentionHeadDim
  float scale;       // multiplies q k^T before the softmax; diffusers: 1 / sqrt(head_dim)
  bool causal;       // query i sees keys j <= i only (torch SDPA's is_causal: top-left aligned)
  ElementType type;  // kFloat16 or kBFloat16, for all four tensors
};

// Returns cudaErrorInvalidValue for malformed arguments (null pointers, negative sizes,
// kv_len == 0, non-finite scale), cudaErrorNotSupported for well-formed ones this kernel does not
// cover (fp32, head_dim not a multiple of 8 or above 512, misaligned pointers or strides, batch or
// heads above 65535) so the caller can fall back to an unfused path, otherwise the launch status.
// Validates before touching the device; never synchronizes.
cudaError_t flash_attention_forward(const FlashAttentionParams& params, cudaStream_t stream);

}  // namespace nd::kernels
