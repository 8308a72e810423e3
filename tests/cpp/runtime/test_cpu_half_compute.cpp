// The CPU half-precision compute switch: which tensors compute in float32 under each mode, and that
// compute_in_float32_where_needed upcasts every half-precision argument and rounds its result once.
#include "runtime/cpu_half_compute.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/errors.h"

namespace nd {
namespace {

// Restores the process-wide mode after each test.
class CpuHalfComputeTest : public ::testing::Test {
 protected:
  void SetUp() override { before_ = cpu_half_compute_mode(); }
  void TearDown() override { set_cpu_half_compute_mode(before_); }

 private:
  CpuHalfCompute before_ = CpuHalfCompute::kAuto;
};

TEST_F(CpuHalfComputeTest, ModesDecideWhichTensorsComputeInFloat32) {
  const at::Tensor half = at::ones({2}, at::kHalf), bf16 = at::ones({2}, at::kBFloat16), f32 = at::ones({2});
  set_cpu_half_compute_mode(CpuHalfCompute::kFloat32);
  EXPECT_TRUE(computes_in_float32(half));
  EXPECT_TRUE(computes_in_float32(bf16));
  EXPECT_FALSE(computes_in_float32(f32));
  EXPECT_FALSE(computes_in_float32(at::Tensor()));
  set_cpu_half_compute_mode(CpuHalfCompute::kNative);
  EXPECT_FALSE(computes_in_float32(half));
  EXPECT_FALSE(computes_in_float32(bf16));
  set_cpu_half_compute_mode(CpuHalfCompute::kAuto);
  EXPECT_EQ(computes_in_float32(half), !cpu_has_native_arithmetic(at::kHalf));
  EXPECT_EQ(computes_in_float32(bf16), !cpu_has_native_arithmetic(at::kBFloat16));
  EXPECT_TRUE(cpu_has_native_arithmetic(at::kFloat));
}

TEST_F(CpuHalfComputeTest, UpcastsEveryHalfArgumentAndRoundsTheResultOnce) {
  set_cpu_half_compute_mode(CpuHalfCompute::kFloat32);
  const at::Tensor x = at::full({3}, 1.0 / 3.0).to(at::kHalf), y = at::full({3}, 2.0).to(at::kHalf);
  const at::Tensor mask = at::ones({3}, at::kBool);
  std::vector<at::ScalarType> seen;
  const at::Tensor out = compute_in_float32_where_needed(
      [&](const at::Tensor& a, const at::Tensor& b, const at::Tensor& m, const at::Tensor& none) {
        seen = {a.scalar_type(), b.scalar_type(), m.scalar_type()};
        EXPECT_FALSE(none.defined());
        return a * b * 3.0;
      },
      x, y, mask, at::Tensor());
  EXPECT_EQ(seen, (std::vector<at::ScalarType>{at::kFloat, at::kFloat, at::kBool}));
  EXPECT_EQ(out.scalar_type(), at::kHalf);
  // (1/3 in half) * 2 * 3 in float32, rounded once to half.
  EXPECT_TRUE(at::equal(out, (x.to(at::kFloat) * 6.0).to(at::kHalf)));
}

TEST_F(CpuHalfComputeTest, NativeModePassesTheArgumentsThrough) {
  set_cpu_half_compute_mode(CpuHalfCompute::kNative);
  const at::Tensor x = at::ones({2}, at::kHalf);
  const at::Tensor out = compute_in_float32_where_needed([](const at::Tensor& a) { return a; }, x);
  EXPECT_TRUE(out.is_same(x));
}

TEST_F(CpuHalfComputeTest, ParsesModesAndRefusesOthers) {
  for (const CpuHalfCompute mode : {CpuHalfCompute::kAuto, CpuHalfCompute::kFloat32, CpuHalfCompute::kNative}) {
    EXPECT_EQ(parse_cpu_half_compute_mode(to_string(mode)), mode);
  }
  EXPECT_THROW(parse_cpu_half_compute_mode("fp32"), ValueError);
}

}  // namespace
}  // namespace nd
