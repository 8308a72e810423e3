// GPU tests of kernels/attention/flash_attention.cu against a float64 host reference, over
// Stable Diffusion's head dims (40, 64, 80, 160, 512) and odd ones, cross-attention's 77 keys,
// lengths that are not tile multiples, strided [B, L, H, D] views and a fused qkv projection.
// Skip, saying why, on machines without a CUDA device (CI); the argument tests run everywhere
// because the kernel validates before touching the device.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernel_test_utils.h"
#include "nd_kernels/attention.h"

namespace nd::kernels {
namespace {

using namespace kernel_testing;


enum class Layout {
  kBhld,      // q, k, v, out each a contiguous [B, H, L, D]
  kBlhd,      // each a contiguous [B, L, H, D] (diffusers' projections), read through strides
  kFusedQkv,  // q, k, v interleaved in one [B, L, 3, H, D] projection output; out [B, L, H, D]
};

struct AttentionCase {
  const char* name;
  ElementType type;
  int batch, heads, q_len, kv_len, head_dim;
  Layout layout;
  bool causal;
  int checked_rows;  // query rows compared per (batch, head); 0 = all (the reference is O(L^2 D))
};

// Where one operand lives: which host/device buffer, the element offset, the strides.
struct Operand {
  int buffer;
  size_t offset;
  AttentionStrides strides;
};

std::vector<int> rows_to_check(const AttentionCase& c, Rng& rng) {
  std::vector<int> rows;
  if (c.checked_rows == 0 || c.checked_rows >= c.q_len) {
    for (int r = 0; r < c.q_len; ++r) rows.push_back(r);
    return rows;
  }
  rows = {0, c.q_len - 1};  // both ends: the first tile and the ragged last one
  while (static_cast<int>(rows.size()) < c.checked_rows) {
    const int r = static_cast<int>(rng.next() % c.q_len);
    if (std::find(rows.begin(), rows.end(), r) == rows.end()) rows.push_back(r);
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

template <typename T>
void run_case(const AttentionCase& c) {
  // 1. Operands, rounded to T on the host; the reference reads the same rounded values.
  const int64_t B = c.batch, H = c.heads, Lq = c.q_len, Lk = c.kv_len, D = c.head_dim;
  std::vector<size_t> sizes;
  Operand q{}, k{}, v{};
  AttentionStrides out_strides{};
  if (c.layout == Layout::kFusedQkv) {
    ASSERT_EQ(Lq, Lk) << "a fused projection has one length";
    sizes = {static_cast<size_t>(B * Lq * 3 * H * D)};
    const AttentionStrides s{Lq * 3 * H * D, D, 3 * H * D};
    q = {0, 0, s};
    k = {0, static_cast<size_t>(H * D), s};
    v = {0, static_cast<size_t>(2 * H * D), s};
    out_strides = blhd_strides(H, Lq, D);
  } else {
    const auto strides = c.layout == Layout::kBhld ? bhld_strides : blhd_strides;
    sizes = {static_cast<size_t>(B * H * Lq * D), static_cast<size_t>(B * H * Lk * D),
             static_cast<size_t>(B * H * Lk * D)};
    q = {0, 0, strides(H, Lq, D)};
    k = {1, 0, strides(H, Lk, D)};
    v = {2, 0, strides(H, Lk, D)};
    out_strides = strides(H, Lq, D);
  }
  Rng rng{static_cast<uint64_t>(c.head_dim) * 1000003u + c.q_len};
  std::vector<std::vector<T>> host(sizes.size());
  std::vector<std::vector<float>> host_f(sizes.size());  // the same values, for the reference
  for (size_t b = 0; b < sizes.size(); ++b) {
    host[b].resize(sizes[b]);
    host_f[b].resize(sizes[b]);
    for (size_t i = 0; i < sizes[b]; ++i) {
      host[b][i] = from_float<T>(rng.unit_variance());
      host_f[b][i] = to_float(host[b][i]);
    }
  }
  const size_t out_size = static_cast<size_t>(B * H * Lq * D);

  // 2. The kernel, on device copies; out starts as NaN so an unwritten element fails the check.
  DeviceBuffers buffers;
  std::vector<T*> device;
  for (const std::vector<T>& values : host) {
    device.push_back(buffers.upload(values));
    ASSERT_NE(device.back(), nullptr);
  }
  T* d_out = buffers.poisoned<T>(out_size);
  ASSERT_NE(d_out, nullptr);
  FlashAttentionParams p{};
  p.q = device[q.buffer] + q.offset;
  p.k = device[k.buffer] + k.offset;
  p.v = device[v.buffer] + v.offset;
  p.out = d_out;
  p.q_strides = q.strides;
  p.k_strides = k.strides;
  p.v_strides = v.strides;
  p.out_strides = out_strides;
  p.batch = B;
  p.heads = H;
  p.q_len = Lq;
  p.kv_len = Lk;
  p.head_dim = D;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  p.causal = c.causal;
  p.type = c.type;
  ASSERT_EQ(flash_attention_forward(p, nullptr), cudaSuccess);
  const std::vector<T> out = DeviceBuffers::download(d_out, out_size);
  ASSERT_EQ(out.size(), out_size);

  // 3. float64 reference on the checked rows of every (batch, head).
  const auto at = [&](const Operand& o, int64_t b, int64_t h, int64_t r) {
    return host_f[o.buffer].data() + o.offset + b * o.strides.batch + h * o.strides.head +
           r * o.strides.row;
  };
  const std::vector<int> rows = rows_to_check(c, rng);
  std::vector<double> scores(Lk), ref(D);
  double err2 = 0, ref2 = 0;
  int64_t non_finite = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (const int r : rows) {
        const float* qr = at(q, b, h, r);
        const int64_t visible = c.causal ? std::min<int64_t>(Lk, r + 1) : Lk;
        double max_score = -INFINITY;
        for (int64_t j = 0; j < visible; ++j) {
          const float* kr = at(k, b, h, j);
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(qr[d]) * kr[d];
          scores[j] = dot * p.scale;
          max_score = std::max(max_score, scores[j]);
        }
        double sum = 0;
        std::fill(ref.begin(), ref.end(), 0.0);
        for (int64_t j = 0; j < visible; ++j) {
          const double w = std::exp(scores[j] - max_score);
          sum += w;
          const float* vr = at(v, b, h, j);
          for (int64_t d = 0; d < D; ++d) ref[d] += w * vr[d];
        }
        const T* got = out.data() + b * out_strides.batch + h * out_strides.head +
                       r * out_strides.row;
        for (int64_t d = 0; d < D; ++d) {
          const double g = to_float(got[d]), want = ref[d] / sum;
          if (!std::isfinite(g)) ++non_finite;
          err2 += (g - want) * (g - want);
          ref2 += want * want;
        }
      }
    }
  }
  EXPECT_EQ(non_finite, 0) << "unwritten or NaN outputs";
  EXPECT_LE(std::sqrt(err2 / ref2), tolerance(c.type));
}

class FlashAttention : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(FlashAttention, MatchesFloat64Reference) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device on this machine";
  const AttentionCase& c = GetParam();
  if (c.type == ElementType::kFloat16) {
    run_case<__half>(c);
  } else {
    run_case<__nv_bfloat16>(c);
  }
}

constexpr ElementType kF16 = ElementType::kFloat16;
constexpr ElementType kBF16 = ElementType::kBFloat16;

// Tiles: 64 query rows x 64 keys up to head_dim 160, 64 x 32 up to 256, 32 x 32 up to 512; the
// lengths below leave ragged last tiles in every configuration.
INSTANTIATE_TEST_SUITE_P(
    Shapes, FlashAttention,
    ::testing::Values(
        // SD 1.5 UNet (head_dim 40): self-attention at 32x32 latents' 1024 tokens, cross 77.
        AttentionCase{"sd15_self_d40", kF16, 2, 2, 1000, 1000, 40, Layout::kBlhd, false, 160},
        AttentionCase{"sd15_cross_d40", kF16, 2, 8, 1000, 77, 40, Layout::kBlhd, false, 0},
        AttentionCase{"sd15_cross_d40_bf16", kBF16, 2, 3, 333, 77, 40, Layout::kBlhd, false, 0},
        // SD 2 / CLIP head_dim 64.
        AttentionCase{"d64_kv333", kF16, 2, 3, 1000, 333, 64, Layout::kBlhd, false, 0},
        AttentionCase{"d64_bf16_q257_kv1000", kBF16, 2, 2, 257, 1000, 64, Layout::kBhld, false, 0},
        AttentionCase{"d64_fused_qkv", kF16, 2, 4, 333, 333, 64, Layout::kFusedQkv, false, 0},
        AttentionCase{"clip_causal_d64", kF16, 2, 12, 77, 77, 64, Layout::kBlhd, true, 0},
        AttentionCase{"causal_q_longer_than_kv", kF16, 1, 2, 200, 77, 64, Layout::kBhld, true, 0},
        AttentionCase{"single_query_single_key", kF16, 1, 1, 1, 1, 64, Layout::kBhld, false, 0},
        // SDXL head_dim 80 (and SD 1.5 at 64x64 latents' 4096 tokens, sampled).
        AttentionCase{"sdxl_cross_d80", kF16, 2, 4, 1000, 77, 80, Layout::kBlhd, false, 0},
        AttentionCase{"d80_bf16_self", kBF16, 2, 2, 1024, 1024, 80, Layout::kBlhd, false, 128},
        AttentionCase{"d80_causal_bf16", kBF16, 1, 2, 300, 300, 80, Layout::kBhld, true, 0},
        AttentionCase{"d40_self_4096", kF16, 1, 2, 4096, 4096, 40, Layout::kBlhd, false, 48},
        // SD 1.5 deepest blocks: head_dim 160.
        AttentionCase{"d160_cross", kF16, 2, 2, 256, 77, 160, Layout::kBlhd, false, 0},
        AttentionCase{"d160_bf16_self", kBF16, 1, 2, 300, 300, 160, Layout::kBhld, false, 0},
        // VAE mid-block: one head of 512 over 64x64 (512 px) and 128x128 (1024 px) latents.
        AttentionCase{"vae_512px_d512", kF16, 1, 1, 4096, 4096, 512, Layout::kBhld, false, 48},
        AttentionCase{"vae_512px_d512_bf16", kBF16, 1, 1, 4096, 4096, 512, Layout::kBlhd, false,
                      32},
        AttentionCase{"vae_1024px_d512", kF16, 1, 1, 16384, 16384, 512, Layout::kBhld, false, 24},
        AttentionCase{"d512_tails", kF16, 2, 1, 1000, 333, 512, Layout::kBhld, false, 64},
        AttentionCase{"d512_cross77", kBF16, 1, 2, 64, 77, 512, Layout::kBlhd, false, 0},
        // Other multiples of 8, one per padded configuration.
        AttentionCase{"odd_d8", kF16, 2, 2, 100, 50, 8, Layout::kBlhd, false, 0},
        AttentionCase{"odd_d72_bf16", kBF16, 2, 2, 130, 99, 72, Layout::kBlhd, false, 0},
        AttentionCase{"d128", kF16, 2, 2, 257, 200, 128, Layout::kBlhd, false, 0},
        AttentionCase{"odd_d200_bf16", kBF16, 1, 2, 130, 77, 200, Layout::kBlhd, false, 0},
        AttentionCase{"d256", kF16, 2, 2, 257, 200, 256, Layout::kBhld, false, 0},
        AttentionCase{"d256_causal", kF16, 1, 2, 100, 100, 256, Layout::kBhld, true, 0},
        AttentionCase{"odd_d320", kF16, 1, 2, 130, 99, 320, Layout::kBlhd, false, 0},
        AttentionCase{"d512_causal", kF16, 1, 1, 100, 100, 512, Layout::kBhld, true, 0}),
    [](const ::testing::TestParamInfo<AttentionCase>& info) {
      return std::string(info.param.name);
    });

// ---- argument checks: no device needed, nothing launched -----------------------------------

// A well-formed call on fake (never dereferenced) 16-byte-aligned pointers; each test breaks one
// field.
FlashAttentionParams valid_params() {
  FlashAttentionParams p{};
  p.q = reinterpret_cast<const void*>(uintptr_t{0x10000});
  p.k = reinterpret_cast<const void*>(uintptr_t{0x20000});
  p.v = reinterpret_cast<const void*>(uintptr_t{0x30000});
  p.out = reinterpret_cast<void*>(uintptr_t{0x40000});
  p.batch = 2;
  p.heads = 2;
  p.q_len = 64;
  p.kv_len = 77;
  p.head_dim = 64;
  p.q_strides = p.out_strides = blhd_strides(2, 64, 64);
  p.k_strides = p.v_strides = blhd_strides(2, 77, 64);
  p.scale = 0.125f;
  p.type = ElementType::kFloat16;
  return p;
}

TEST(FlashAttentionArguments, UnsupportedHeadDimsAreNotSupported) {
  for (const int64_t d : {36, 41, 520, 1024}) {
    FlashAttentionParams p = valid_params();
    p.head_dim = d;
    EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorNotSupported) << "head_dim " << d;
  }
  for (const int64_t d : {0, -64}) {
    FlashAttentionParams p = valid_params();
    p.head_dim = d;
    EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorInvalidValue) << "head_dim " << d;
  }
}

TEST(FlashAttentionArguments, NullPointersAreInvalid) {
  for (int which = 0; which < 4; ++which) {
    FlashAttentionParams p = valid_params();
    if (which == 0) p.q = nullptr;
    if (which == 1) p.k = nullptr;
    if (which == 2) p.v = nullptr;
    if (which == 3) p.out = nullptr;
    EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorInvalidValue) << "pointer " << which;
  }
}

TEST(FlashAttentionArguments, OnlySixteenBitTypes) {
  FlashAttentionParams p = valid_params();
  p.type = ElementType::kFloat32;
  EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorNotSupported);
  p.type = static_cast<ElementType>(7);
  EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorInvalidValue);
}

TEST(FlashAttentionArguments, MisalignedViewsAreNotSupported) {
  FlashAttentionParams p = valid_params();
  p.k_strides.row = 68;  // not a multiple of 8 elements: rows are not 16-byte aligned
  EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorNotSupported);
  p = valid_params();
  p.v = reinterpret_cast<const void*>(uintptr_t{0x30002});
  EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorNotSupported);
}

TEST(FlashAttentionArguments, MalformedSizesAndScaleAreInvalid) {
  FlashAttentionParams p = valid_params();
  p.kv_len = 0;  // softmax over no keys
  EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorInvalidValue);
  p = valid_params();
  p.q_len = -1;
  EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorInvalidValue);
  p = valid_params();
  p.scale = NAN;
  EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorInvalidValue);
  p = valid_params();
  p.heads = 70000;  // grid y is 16-bit
  EXPECT_EQ(flash_attention_forward(p, nullptr), cudaErrorNotSupported);
}

TEST(FlashAttentionArguments, EmptyOutputIsANoOp) {
  FlashAttentionParams p = valid_params();
  p.batch = 0;
  p.q = p.k = p.v = nullptr;
  p.out = nullptr;
  EXPECT_EQ(flash_attention_forward(p, nullptr), cudaSuccess);
  p = valid_params();
  p.q_len = 0;
  p.kv_len = 0;
  EXPECT_EQ(flash_attention_forward(p, nullptr), cudaSuccess);
}

}  // namespace
}  // namespace nd::kernels
