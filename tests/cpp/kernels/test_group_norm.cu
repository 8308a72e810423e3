// GPU tests of kernels/normalization/{group_norm,layer_norm}.cu against float64 host references:
// GroupNorm in NCHW and channels-last with and without the fused add (ResnetBlock2D's h + temb),
// SiLU and affine, at UNet shapes (C = 320..1280) and VAE ones (4M-element groups); LayerNorm
// at transformer and CLIP widths. Skip, saying why, without a CUDA device (CI); the argument
// tests run everywhere because the kernels validate before touching the device.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernel_test_utils.h"
#include "nd_kernels/normalization.h"

namespace nd::kernels {
namespace {

using namespace kernel_testing;


// `count` values of T with the given mean and unit variance, and the same values as double.
template <typename T>
void random_values(size_t count, float mean, Rng& rng, std::vector<T>& values,
                   std::vector<double>& exact) {
  values.resize(count);
  exact.resize(count);
  for (size_t i = 0; i < count; ++i) {
    values[i] = from_float<T>(mean + rng.unit_variance());
    exact[i] = to_float(values[i]);
  }
}

double relative_l2(const std::vector<double>& got, const std::vector<double>& want) {
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    err2 += (got[i] - want[i]) * (got[i] - want[i]);
    ref2 += want[i] * want[i];
  }
  return std::sqrt(err2 / ref2);
}

// ---- GroupNorm -----------------------------------------------------------------------------

struct GroupNormCase {
  const char* name;
  ElementType type;
  int n, c, h, w, groups;
  bool channels_last, add, silu, gamma, beta;
  float input_mean = 0.f;          // far from 0 tests the statistics' stability
  double tolerance = 0;            // 0: the type's bar
  bool explicit_workspace = false;  // else the call allocates stream-ordered
  bool in_place = false;
};

template <typename T>
void run_group_norm(const GroupNormCase& c) {
  // 1. Inputs rounded to T; the reference reads the same rounded values.
  const int64_t hw = static_cast<int64_t>(c.h) * c.w;
  const size_t numel = static_cast<size_t>(c.n) * c.c * hw;
  Rng rng{static_cast<uint64_t>(numel) * 31u + c.c};
  std::vector<T> x, add, gamma, beta;
  std::vector<double> x_d, add_d, gamma_d, beta_d;
  random_values(numel, c.input_mean, rng, x, x_d);
  if (c.add) random_values(static_cast<size_t>(c.n) * c.c, 0.f, rng, add, add_d);
  if (c.gamma) random_values(c.c, 1.f, rng, gamma, gamma_d);
  if (c.beta) random_values(c.c, 0.f, rng, beta, beta_d);

  // 2. The kernel; the output starts as NaN so an unwritten element fails the check.
  DeviceBuffers buffers;
  T* d_x = buffers.upload(x);
  ASSERT_NE(d_x, nullptr);
  T* d_out = c.in_place ? d_x : buffers.poisoned<T>(numel);
  ASSERT_NE(d_out, nullptr);
  const T* d_add = buffers.upload(add);
  const T* d_gamma = buffers.upload(gamma);
  const T* d_beta = buffers.upload(beta);
  GroupNormParams p{};
  p.input = d_x;
  p.output = d_out;
  p.gamma = d_gamma;
  p.beta = d_beta;
  p.add = d_add;
  p.batch = c.n;
  p.channels = c.c;
  p.height = c.h;
  p.width = c.w;
  p.num_groups = c.groups;
  p.eps = 1e-5f;
  p.channels_last = c.channels_last;
  p.apply_silu = c.silu;
  p.type = c.type;
  if (c.explicit_workspace) {
    const size_t bytes = group_norm_workspace_bytes(p);
    ASSERT_GT(bytes, 0u);
    p.workspace = buffers.raw(bytes);
    ASSERT_NE(p.workspace, nullptr);
  }
  ASSERT_EQ(group_norm(p, nullptr), cudaSuccess);
  const std::vector<T> out = DeviceBuffers::download(d_out, numel);
  ASSERT_EQ(out.size(), numel);

  // 3. float64 reference: two-pass statistics per (n, group) of x + add.
  const auto index = [&](int64_t n, int64_t ch, int64_t s) {
    return c.channels_last ? (n * hw + s) * c.c + ch : (n * c.c + ch) * hw + s;
  };
  const int cg = c.c / c.groups;
  std::vector<double> got(numel), want(numel);
  for (int64_t n = 0; n < c.n; ++n) {
    for (int64_t g = 0; g < c.groups; ++g) {
      const auto value = [&](int64_t ch, int64_t s) {
        return x_d[index(n, ch, s)] + (c.add ? add_d[n * c.c + ch] : 0.0);
      };
      double sum = 0;
      for (int64_t ch = g * cg; ch < (g + 1) * cg; ++ch) {
        for (int64_t s = 0; s < hw; ++s) sum += value(ch, s);
      }
      const double mean = sum / (static_cast<double>(cg) * hw);
      double sq = 0;
      for (int64_t ch = g * cg; ch < (g + 1) * cg; ++ch) {
        for (int64_t s = 0; s < hw; ++s) sq += (value(ch, s) - mean) * (value(ch, s) - mean);
      }
      const double rstd = 1.0 / std::sqrt(sq / (static_cast<double>(cg) * hw) + 1e-5);
      for (int64_t ch = g * cg; ch < (g + 1) * cg; ++ch) {
        for (int64_t s = 0; s < hw; ++s) {
          double y = (value(ch, s) - mean) * rstd;
          if (c.gamma) y *= gamma_d[ch];
          if (c.beta) y += beta_d[ch];
          if (c.silu) y = y / (1.0 + std::exp(-y));
          const int64_t i = index(n, ch, s);
          want[i] = y;
          got[i] = to_float(out[i]);
        }
      }
    }
  }
  EXPECT_LE(relative_l2(got, want), c.tolerance > 0 ? c.tolerance : tolerance(c.type));
}

class GroupNorm : public ::testing::TestWithParam<GroupNormCase> {};

TEST_P(GroupNorm, MatchesFloat64Reference) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device on this machine";
  const GroupNormCase& c = GetParam();
  switch (c.type) {
    case ElementType::kFloat32: return run_group_norm<float>(c);
    case ElementType::kFloat16: return run_group_norm<__half>(c);
    case ElementType::kBFloat16: return run_group_norm<__nv_bfloat16>(c);
  }
}

constexpr ElementType kF32 = ElementType::kFloat32;
constexpr ElementType kF16 = ElementType::kFloat16;
constexpr ElementType kBF16 = ElementType::kBFloat16;
constexpr bool kNchw = false, kNhwc = true;

GroupNormCase with_mean(GroupNormCase c, float mean, double tol) {
  c.input_mean = mean;
  c.tolerance = tol;
  return c;
}
GroupNormCase with_workspace(GroupNormCase c) {
  c.explicit_workspace = true;
  return c;
}
GroupNormCase in_place(GroupNormCase c) {
  c.in_place = true;
  return c;
}

// Fields: name, type, N, C, H, W, groups, channels_last, add, silu, gamma, beta.
INSTANTIATE_TEST_SUITE_P(
    Shapes, GroupNorm,
    ::testing::Values(
        GroupNormCase{"fp32_nchw_affine", kF32, 2, 64, 8, 8, 32, kNchw, false, false, true, true},
        // ResnetBlock2D norm2 at C = 320 (10 channels a group: 2-element vectors in NHWC).
        GroupNormCase{"fp16_nhwc_c320_add_silu", kF16, 2, 320, 16, 16, 32, kNhwc, true, true, true,
                      true},
        GroupNormCase{"fp16_nchw_c320_add_silu", kF16, 2, 320, 16, 16, 32, kNchw, true, true, true,
                      true},
        // Odd spatial size: scalar accesses, channels straddling chunk boundaries.
        GroupNormCase{"bf16_nchw_c640_13x7_add_silu", kBF16, 2, 640, 13, 7, 32, kNchw, true, true,
                      true, true},
        // The UNet's deepest blocks: C = 1280 at 16x16.
        GroupNormCase{"fp16_nchw_c1280_16x16_add_silu", kF16, 2, 1280, 16, 16, 32, kNchw, true,
                      true, true, true},
        GroupNormCase{"bf16_nhwc_c1280_16x16_add_silu", kBF16, 2, 1280, 16, 16, 32, kNhwc, true,
                      true, true, true},
        GroupNormCase{"fp32_nhwc_add_no_affine", kF32, 3, 96, 9, 11, 24, kNhwc, true, false, false,
                      false},
        GroupNormCase{"fp16_nchw_gamma_only", kF16, 1, 32, 5, 5, 8, kNchw, false, true, true,
                      false},
        // VAE decoder: 256 channels at 256x256 (524288-element groups, 64 chunks each).
        GroupNormCase{"vae_fp16_nchw_c256_256x256", kF16, 1, 256, 256, 256, 32, kNchw, false, true,
                      true, true},
        GroupNormCase{"vae_bf16_nhwc_c128_256x256", kBF16, 1, 128, 256, 256, 32, kNhwc, false,
                      true, true, true},
        // A VAE group at 512x512: 16 channels x 262144 positions = 4M elements.
        GroupNormCase{"vae_fp16_nchw_4m_group", kF16, 1, 16, 512, 512, 1, kNchw, false, true, true,
                      true},
        // 9.4M-element group: more chunks than the cap, so chunks grow past 8192 elements.
        GroupNormCase{"fp16_nchw_capped_chunks", kF16, 1, 36, 512, 512, 1, kNchw, false, false,
                      true, true},
        // Mean 100, std 1 over 32K-element groups: E[x^2] - E[x]^2 in fp32 would lose ~1e-2
        // of the variance; fp32 ulp at 100 (8e-6) is what bounds a stable algorithm.
        with_mean(GroupNormCase{"fp32_offset_mean_nchw", kF32, 1, 32, 64, 64, 4, kNchw, false,
                                false, false, false},
                  100.f, 1e-4),
        with_mean(GroupNormCase{"fp32_offset_mean_nhwc", kF32, 1, 32, 64, 64, 4, kNhwc, true,
                                false, true, true},
                  100.f, 1e-4),
        with_workspace(GroupNormCase{"fp16_explicit_workspace", kF16, 2, 128, 32, 32, 32, kNchw,
                                     true, true, true, true}),
        in_place(GroupNormCase{"fp16_in_place", kF16, 2, 128, 32, 32, 32, kNhwc, true, true, true,
                               true})),
    [](const ::testing::TestParamInfo<GroupNormCase>& info) {
      return std::string(info.param.name);
    });

// ---- LayerNorm -----------------------------------------------------------------------------

struct LayerNormCase {
  const char* name;
  ElementType type;
  int rows, cols, input_row_stride, output_row_stride;
  bool gamma, beta;
};

template <typename T>
void run_layer_norm(const LayerNormCase& c) {
  Rng rng{static_cast<uint64_t>(c.rows) * 7919u + c.cols};
  std::vector<T> x, gamma, beta;
  std::vector<double> x_d, gamma_d, beta_d;
  random_values(static_cast<size_t>(c.rows) * c.input_row_stride, 0.5f, rng, x, x_d);
  if (c.gamma) random_values(c.cols, 1.f, rng, gamma, gamma_d);
  if (c.beta) random_values(c.cols, 0.f, rng, beta, beta_d);
  const size_t out_size = static_cast<size_t>(c.rows) * c.output_row_stride;

  DeviceBuffers buffers;
  const T* d_x = buffers.upload(x);
  T* d_out = buffers.poisoned<T>(out_size);
  ASSERT_NE(d_x, nullptr);
  ASSERT_NE(d_out, nullptr);
  const T* d_gamma = buffers.upload(gamma);
  const T* d_beta = buffers.upload(beta);
  LayerNormParams p{};
  p.input = d_x;
  p.output = d_out;
  p.gamma = d_gamma;
  p.beta = d_beta;
  p.rows = c.rows;
  p.cols = c.cols;
  p.input_row_stride = c.input_row_stride;
  p.output_row_stride = c.output_row_stride;
  p.eps = 1e-5f;
  p.type = c.type;
  ASSERT_EQ(layer_norm(p, nullptr), cudaSuccess);
  const std::vector<T> out = DeviceBuffers::download(d_out, out_size);
  ASSERT_EQ(out.size(), out_size);

  std::vector<double> got, want;
  for (int64_t r = 0; r < c.rows; ++r) {
    const double* row = x_d.data() + r * c.input_row_stride;
    double sum = 0, sq = 0;
    for (int j = 0; j < c.cols; ++j) sum += row[j];
    const double mean = sum / c.cols;
    for (int j = 0; j < c.cols; ++j) sq += (row[j] - mean) * (row[j] - mean);
    const double rstd = 1.0 / std::sqrt(sq / c.cols + 1e-5);
    for (int j = 0; j < c.cols; ++j) {
      double y = (row[j] - mean) * rstd;
      if (c.gamma) y *= gamma_d[j];
      if (c.beta) y += beta_d[j];
      want.push_back(y);
      got.push_back(to_float(out[r * c.output_row_stride + j]));
    }
  }
  EXPECT_LE(relative_l2(got, want), tolerance(c.type));
}

class LayerNorm : public ::testing::TestWithParam<LayerNormCase> {};

TEST_P(LayerNorm, MatchesFloat64Reference) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device on this machine";
  const LayerNormCase& c = GetParam();
  switch (c.type) {
    case ElementType::kFloat32: return run_layer_norm<float>(c);
    case ElementType::kFloat16: return run_layer_norm<__half>(c);
    case ElementType::kBFloat16: return run_layer_norm<__nv_bfloat16>(c);
  }
}

// Fields: name, type, rows, cols, input_row_stride, output_row_stride, gamma, beta.
INSTANTIATE_TEST_SUITE_P(
    Shapes, LayerNorm,
    ::testing::Values(
        LayerNormCase{"fp32_clip_77x768", kF32, 77, 768, 768, 768, true, true},
        // A view: every third 320-wide slice of a 960-wide projection.
        LayerNormCase{"fp16_4096x320_strided_input", kF16, 4096, 320, 960, 320, true, true},
        LayerNormCase{"bf16_33x1280", kBF16, 33, 1280, 1280, 1280, true, true},
        LayerNormCase{"fp16_prior_5x2048", kF16, 5, 2048, 2048, 2048, true, true},
        LayerNormCase{"fp16_odd_cols_999", kF16, 7, 999, 999, 1001, false, true},
        LayerNormCase{"fp32_no_affine_1000", kF32, 9, 1000, 1000, 1000, false, false},
        LayerNormCase{"bf16_single_row_5", kBF16, 1, 5, 5, 5, true, false}),
    [](const ::testing::TestParamInfo<LayerNormCase>& info) {
      return std::string(info.param.name);
    });

// ---- argument checks: no device needed, nothing launched -----------------------------------

// A well-formed call on fake (never dereferenced) pointers; each test breaks one field.
GroupNormParams valid_group_norm() {
  GroupNormParams p{};
  p.input = reinterpret_cast<const void*>(uintptr_t{0x10000});
  p.output = reinterpret_cast<void*>(uintptr_t{0x20000});
  p.batch = 2;
  p.channels = 64;
  p.height = 8;
  p.width = 8;
  p.num_groups = 32;
  p.eps = 1e-5f;
  p.type = ElementType::kFloat16;
  return p;
}

TEST(GroupNormArguments, GroupsMustDivideChannels) {
  GroupNormParams p = valid_group_norm();
  p.channels = 10;
  p.num_groups = 3;
  EXPECT_EQ(group_norm(p, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(group_norm_workspace_bytes(p), 0u);
  p.num_groups = 0;
  EXPECT_EQ(group_norm(p, nullptr), cudaErrorInvalidValue);
}

TEST(GroupNormArguments, MalformedArgumentsAreInvalid) {
  GroupNormParams p = valid_group_norm();
  p.input = nullptr;
  EXPECT_EQ(group_norm(p, nullptr), cudaErrorInvalidValue);
  p = valid_group_norm();
  p.output = nullptr;
  EXPECT_EQ(group_norm(p, nullptr), cudaErrorInvalidValue);
  p = valid_group_norm();
  p.eps = -1e-5f;
  EXPECT_EQ(group_norm(p, nullptr), cudaErrorInvalidValue);
  p.eps = NAN;
  EXPECT_EQ(group_norm(p, nullptr), cudaErrorInvalidValue);
  p = valid_group_norm();
  p.height = -1;
  EXPECT_EQ(group_norm(p, nullptr), cudaErrorInvalidValue);
  p = valid_group_norm();
  p.type = static_cast<ElementType>(7);
  EXPECT_EQ(group_norm(p, nullptr), cudaErrorInvalidValue);
  p = valid_group_norm();
  p.workspace = reinterpret_cast<void*>(uintptr_t{0x30004});  // not 16-byte aligned
  EXPECT_EQ(group_norm(p, nullptr), cudaErrorInvalidValue);
}

TEST(GroupNormArguments, HugeGroupsAreNotSupported) {
  GroupNormParams p = valid_group_norm();
  p.channels = 32;
  p.num_groups = 1;
  p.height = 8192;
  p.width = 8192;  // 2^31 elements in one group
  EXPECT_EQ(group_norm(p, nullptr), cudaErrorNotSupported);
}

TEST(GroupNormArguments, EmptyInputIsANoOp) {
  GroupNormParams p = valid_group_norm();
  p.batch = 0;
  p.input = nullptr;
  p.output = nullptr;
  EXPECT_EQ(group_norm(p, nullptr), cudaSuccess);
  EXPECT_EQ(group_norm_workspace_bytes(p), 0u);
}

TEST(GroupNormArguments, WorkspaceHoldsChunkMomentsAndGroupStatistics) {
  // 2 x 32 groups of 2 x 64 elements: one chunk each, 12-byte moments then 8-byte statistics.
  EXPECT_EQ(group_norm_workspace_bytes(valid_group_norm()), 64u * 12u + 64u * 8u);
  GroupNormParams p = valid_group_norm();
  p.batch = 1;
  p.channels = 512;
  p.height = 512;
  p.width = 512;  // 4M-element groups: 512 chunks of 8192
  EXPECT_EQ(group_norm_workspace_bytes(p), 32u * 512u * 12u + 32u * 8u);
}

LayerNormParams valid_layer_norm() {
  LayerNormParams p{};
  p.input = reinterpret_cast<const void*>(uintptr_t{0x10000});
  p.output = reinterpret_cast<void*>(uintptr_t{0x20000});
  p.rows = 77;
  p.cols = 768;
  p.input_row_stride = 768;
  p.output_row_stride = 768;
  p.eps = 1e-5f;
  p.type = ElementType::kFloat16;
  return p;
}

TEST(LayerNormArguments, MalformedArgumentsAreInvalid) {
  LayerNormParams p = valid_layer_norm();
  p.input = nullptr;
  EXPECT_EQ(layer_norm(p, nullptr), cudaErrorInvalidValue);
  p = valid_layer_norm();
  p.output = nullptr;
  EXPECT_EQ(layer_norm(p, nullptr), cudaErrorInvalidValue);
  p = valid_layer_norm();
  p.output_row_stride = 700;  // rows would overlap
  EXPECT_EQ(layer_norm(p, nullptr), cudaErrorInvalidValue);
  p = valid_layer_norm();
  p.cols = -1;
  EXPECT_EQ(layer_norm(p, nullptr), cudaErrorInvalidValue);
  p = valid_layer_norm();
  p.eps = INFINITY;
  EXPECT_EQ(layer_norm(p, nullptr), cudaErrorInvalidValue);
}

TEST(LayerNormArguments, EmptyInputIsANoOp) {
  LayerNormParams p = valid_layer_norm();
  p.rows = 0;
  p.input = nullptr;
  p.output = nullptr;
  EXPECT_EQ(layer_norm(p, nullptr), cudaSuccess);
}

}  // namespace
}  // namespace nd::kernels
