#include "runtime/fused_ops.h"

#include <ATen/ATen.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

#ifdef ND_WITH_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "nd_kernels/activation.h"
#include "nd_kernels/attention.h"
#include "nd_kernels/normalization.h"
#endif

#include "core/errors.h"
#include "runtime/cpu_half_compute.h"

namespace nd {
namespace {

std::atomic<bool>& kernels_flag() {
  static std::atomic<bool> flag{[] {
    const char* env = std::getenv("ND_FUSED_KERNELS");
    return !(env && std::string(env) == "0");
  }()};
  return flag;
}

at::Tensor attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return compute_in_float32_where_needed(
      [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) { return at::scaled_dot_product_attention(q, k, v); },
      q, k, v);
}

at::Tensor group_norm_reference(const at::Tensor& x, int64_t num_groups, const at::Tensor& weight,
                                const at::Tensor& bias, double eps, const at::Tensor& add, bool apply_silu) {
  at::Tensor h = x;
  if (add.defined()) {
    std::vector<int64_t> shape(x.dim(), 1);
    shape[0] = add.size(0), shape[1] = add.size(1);
    h = h + add.view(shape);
  }
  h = compute_in_float32_where_needed(
      [&](const at::Tensor& h, const at::Tensor& weight, const at::Tensor& bias) {
        return at::group_norm(h, num_groups, weight, bias, eps);
      },
      h, weight, bias);
  return apply_silu ? at::silu(h) : h;
}

at::Tensor geglu_reference(const at::Tensor& projected) {
  // Ref: diffusers activations.py, GEGLU: hidden, gate = proj(x).chunk(2, -1); hidden * gelu(gate).
  const std::vector<at::Tensor> parts = projected.chunk(2, -1);
  return parts[0] * at::gelu(parts[1]);
}

#ifdef ND_WITH_KERNELS

bool kernel_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

kernels::ElementType element_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kHalf: return kernels::ElementType::kFloat16;
    case at::kBFloat16: return kernels::ElementType::kBFloat16;
    default: return kernels::ElementType::kFloat32;
  }
}

// The kernels run for CUDA half-precision tensors when switched on; everything else takes ATen.
bool use_kernels_for(const at::Tensor& t) { return kernels_flag().load() && t.is_cuda() && kernel_dtype(t); }

cudaStream_t current_stream(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

// A kernel's launch status becomes an engine error naming the op (launch errors are programming
// errors or an exhausted device, never bad user input that ATen would have accepted).
void check_launch(cudaError_t status, const char* op) {
  if (status != cudaSuccess) throw Error(std::string("native_diffusers: ") + op + " kernel failed: " + cudaGetErrorString(status));
}

#endif

std::atomic<bool>& attention_flag() {
  static std::atomic<bool> flag{true};
  return flag;
}

}  // namespace

bool fused_attention_enabled() { return fused_kernels_enabled() && attention_flag().load(); }
void set_fused_attention_enabled(bool enabled) { attention_flag().store(enabled); }

bool fused_kernels_available() {
#ifdef ND_WITH_KERNELS
  return true;
#else
  return false;
#endif
}

bool fused_kernels_enabled() { return fused_kernels_available() && kernels_flag().load(); }
void set_fused_kernels_enabled(bool enabled) { kernels_flag().store(enabled); }

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#ifdef ND_WITH_KERNELS
  if (use_kernels_for(q) && attention_flag().load() && q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && k.scalar_type() == q.scalar_type() &&
      v.scalar_type() == q.scalar_type() && k.device() == q.device() && v.device() == q.device() &&
      q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1 && k.sizes() == v.sizes() &&
      q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3) && k.size(2) > 0) {
    const c10::cuda::CUDAGuard guard(q.device());
    // [B, Lq, heads, d] storage viewed as [B, heads, Lq, d]: the output comes back in the layout
    // the out-projection reads without a copy.
    at::Tensor out = at::empty({q.size(0), q.size(2), q.size(1), q.size(3)}, q.options()).transpose(1, 2);
    kernels::FlashAttentionParams p{};
    p.q = q.data_ptr(), p.k = k.data_ptr(), p.v = v.data_ptr(), p.out = out.data_ptr();
    p.q_strides = {q.stride(0), q.stride(1), q.stride(2)};
    p.k_strides = {k.stride(0), k.stride(1), k.stride(2)};
    p.v_strides = {v.stride(0), v.stride(1), v.stride(2)};
    p.out_strides = {out.stride(0), out.stride(1), out.stride(2)};
    p.batch = q.size(0), p.heads = q.size(1), p.q_len = q.size(2), p.kv_len = k.size(2), p.head_dim = q.size(3);
    p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.size(3))));
    p.causal = false;
    p.type = element_type(q);
    const cudaError_t status = kernels::flash_attention_forward(p, current_stream(q));
    // Not supported (head size, alignment): validated before any launch, so ATen can take over.
    if (status != cudaErrorNotSupported) {
      check_launch(status, "attention");
      return out;
    }
  }
#endif
  return attention_reference(q, k, v);
}

at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                            bool is_causal) {
  return compute_in_float32_where_needed(
      [is_causal](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
        return at::scaled_dot_product_attention(q, k, v, mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt,
                                                /*dropout_p=*/0.0, is_causal);
      },
      q, k, v, mask);
}

at::Tensor group_norm(const at::Tensor& x, int64_t num_groups, const at::Tensor& weight, const at::Tensor& bias,
                      double eps, const at::Tensor& add, bool apply_silu) {
  if (x.dim() < 2 || num_groups <= 0 || x.size(1) % num_groups != 0) {
    throw ValueError("group_norm: " + std::to_string(x.dim() >= 2 ? x.size(1) : 0) + " channels do not split into " +
                     std::to_string(num_groups) + " groups");
  }
  if (add.defined() && (add.dim() != 2 || add.size(0) != x.size(0) || add.size(1) != x.size(1))) {
    throw ValueError("group_norm: add must have shape [" + std::to_string(x.size(0)) + ", " +
                     std::to_string(x.size(1)) + "], got " + c10::str(add.sizes()));
  }
#ifdef ND_WITH_KERNELS
  const bool channels_last = x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
  const bool same_type = [&] {
    for (const at::Tensor* t : {&weight, &bias, &add}) {
      if (t->defined() && (t->scalar_type() != x.scalar_type() || !t->is_contiguous() || t->device() != x.device())) return false;
    }
    return true;
  }();
  if (use_kernels_for(x) && x.dim() == 4 && same_type && (x.is_contiguous() || channels_last)) {
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor out = at::empty_like(x);  // preserves the memory format
    kernels::GroupNormParams p{};
    p.input = x.data_ptr(), p.output = out.data_ptr();
    p.gamma = weight.defined() ? weight.data_ptr() : nullptr;
    p.beta = bias.defined() ? bias.data_ptr() : nullptr;
    p.add = add.defined() ? add.data_ptr() : nullptr;
    p.batch = x.size(0), p.channels = x.size(1), p.height = x.size(2), p.width = x.size(3);
    p.num_groups = num_groups, p.eps = static_cast<float>(eps);
    p.channels_last = channels_last, p.apply_silu = apply_silu;
    p.type = element_type(x);
    // The partial statistics come from torch's caching allocator, which CUDA graph capture pools.
    const size_t workspace_bytes = kernels::group_norm_workspace_bytes(p);
    at::Tensor workspace;
    if (workspace_bytes > 0) {
      workspace = at::empty({static_cast<int64_t>(workspace_bytes)}, x.options().dtype(at::kByte));
      p.workspace = workspace.data_ptr();
    }
    const cudaError_t status = kernels::group_norm(p, current_stream(x));
    if (status != cudaErrorNotSupported) {
      check_launch(status, "group_norm");
      return out;
    }
  }
#endif
  return group_norm_reference(x, num_groups, weight, bias, eps, add, apply_silu);
}

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  const int64_t dim = x.size(-1);
#ifdef ND_WITH_KERNELS
  const bool params_ok = (!weight.defined() || (weight.scalar_type() == x.scalar_type() && weight.is_contiguous())) &&
                         (!bias.defined() || (bias.scalar_type() == x.scalar_type() && bias.is_contiguous()));
  if (use_kernels_for(x) && params_ok && x.is_contiguous() && x.numel() > 0) {
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor out = at::empty_like(x);
    kernels::LayerNormParams p{};
    p.input = x.data_ptr(), p.output = out.data_ptr();
    p.gamma = weight.defined() ? weight.data_ptr() : nullptr;
    p.beta = bias.defined() ? bias.data_ptr() : nullptr;
    p.rows = x.numel() / dim, p.cols = dim, p.input_row_stride = dim, p.output_row_stride = dim;
    p.eps = static_cast<float>(eps);
    p.type = element_type(x);
    const cudaError_t status = kernels::layer_norm(p, current_stream(x));
    if (status != cudaErrorNotSupported) {
      check_launch(status, "layer_norm");
      return out;
    }
  }
#endif
  return compute_in_float32_where_needed(
      [&](const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
        return at::layer_norm(x, {dim}, weight, bias, eps);
      },
      x, weight, bias);
}

at::Tensor geglu(const at::Tensor& projected) {
  if (projected.dim() == 0 || projected.size(-1) % 2 != 0) {
    throw ValueError("geglu: the last dimension must hold [value | gate] halves, got " + c10::str(projected.sizes()));
  }
#ifdef ND_WITH_KERNELS
  if (use_kernels_for(projected) && projected.is_contiguous()) {
    const c10::cuda::CUDAGuard guard(projected.device());
    std::vector<int64_t> shape = projected.sizes().vec();
    shape.back() /= 2;
    at::Tensor out = at::empty(shape, projected.options());
    kernels::GegluParams p{};
    p.input = projected.data_ptr(), p.output = out.data_ptr();
    p.cols = shape.back(), p.rows = shape.back() == 0 ? 0 : out.numel() / shape.back();
    p.type = element_type(projected);
    check_launch(kernels::geglu(p, current_stream(projected)), "geglu");
    return out;
  }
#endif
  return geglu_reference(projected);
}

}  // namespace nd
