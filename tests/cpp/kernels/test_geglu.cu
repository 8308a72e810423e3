// GPU test of kernels/activation/geglu.cu against a float64 host reference. Skips, saying why,
// on machines without a CUDA device (CI); the build itself proves the kernel compiles there.
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernel_test_utils.h"
#include "nd_kernels/activation.h"

namespace nd::kernels {
namespace {

using kernel_testing::DeviceBuffers;
using kernel_testing::have_device;

// Awkward sizes on purpose: odd widths and a row count that is not a multiple of the block.
class Geglu : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(Geglu, Float16MatchesFloat64Reference) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device on this machine";
  const auto [rows, cols] = GetParam();
  std::mt19937 rng(0);
  std::normal_distribution<float> dist(0.f, 2.f);
  std::vector<__half> in(static_cast<size_t>(rows) * 2 * cols);
  for (auto& v : in) v = __float2half(dist(rng));
  const size_t out_size = static_cast<size_t>(rows) * cols;
  DeviceBuffers buffers;
  const __half* d_in = buffers.upload(in);
  __half* d_out = buffers.poisoned<__half>(out_size);
  ASSERT_NE(d_in, nullptr);
  ASSERT_NE(d_out, nullptr);
  ASSERT_EQ(geglu({d_in, d_out, rows, cols, ElementType::kFloat16}, nullptr), cudaSuccess);
  const std::vector<__half> out = DeviceBuffers::download(d_out, out_size);
  ASSERT_EQ(out.size(), out_size);
  double err2 = 0, ref2 = 0;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const double x = __half2float(in[r * 2 * cols + c]);
      const double g = __half2float(in[r * 2 * cols + cols + c]);
      const double ref = x * 0.5 * g * (1.0 + std::erf(g / std::sqrt(2.0)));
      const double got = __half2float(out[r * cols + c]);
      err2 += (got - ref) * (got - ref);
      ref2 += ref * ref;
    }
  }
  EXPECT_LE(std::sqrt(err2 / ref2), 1e-3);  // relative L2, the issue's fp16 kernel bar
}

INSTANTIATE_TEST_SUITE_P(Sizes, Geglu,
                         ::testing::Values(std::make_pair(1, 1), std::make_pair(77, 768),
                                           std::make_pair(257, 769), std::make_pair(4096, 1280),
                                           std::make_pair(3, 5125)));

}  // namespace
}  // namespace nd::kernels
