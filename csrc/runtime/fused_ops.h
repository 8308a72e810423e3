// The engine's entry points to the fused CUDA kernels in kernels/. Each takes ATen tensors and runs
// the kernel for the CUDA float16/bfloat16 tensors it supports, and otherwise (CPU, float32, shapes
// a kernel does not cover, kernels switched off) the ATen composition it replaces, so models call
// one function on every device. The ATen path is also the reference the kernels are tested against.
#pragma once

#include <ATen/core/Tensor.h>

namespace nd {

// Built with kernels/ against a CUDA build of torch.
bool fused_kernels_available();
// Process-wide switch, on by default; ND_FUSED_KERNELS=0 in the environment turns it off.
bool fused_kernels_enabled();
void set_fused_kernels_enabled(bool enabled);
// The attention kernel alone (diffusers' enable/disable_xformers_memory_efficient_attention choose
// it or PyTorch's SDPA), on by default.
bool fused_attention_enabled();
void set_fused_attention_enabled(bool enabled);

// softmax(q k^T / sqrt(head_dim)) v. q: [B, heads, Lq, head_dim], k and v: [B, heads, Lk, head_dim],
// any strides with head_dim contiguous (views of [B, L, heads, head_dim] projections need no copy).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The same with an attention mask (boolean, or added to the scores; undefined for none) or a causal
// one, for the text encoders and the prior: always PyTorch's SDPA, which has no fused kernel to lose.
at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                            bool is_causal);

// silu(group_norm(x + add[:, :, None, None])) with the silu and the add optional: the ResNet
// block's norm1+act and temb-add+norm2+act in one pass. x: [N, C, *spatial]; add: [N, C] or undefined.
at::Tensor group_norm(const at::Tensor& x, int64_t num_groups, const at::Tensor& weight, const at::Tensor& bias,
                      double eps, const at::Tensor& add = at::Tensor(), bool apply_silu = false);

// layer_norm over the last dimension.
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps);

// diffusers' GEGLU gate: with [value | gate] the two halves of the last dimension, value * gelu(gate).
at::Tensor geglu(const at::Tensor& projected);

}  // namespace nd
