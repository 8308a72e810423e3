// CudaGraphCache's contract where no graph can be captured (CPU tensors, or a build without CUDA):
// the body runs on the caller's tensors, the lasting inputs after the others, in order.
// Capture and replay are checked on the GPU (tests/python/gpu/test_cuda_engine.py).
#include "runtime/cuda_graph.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

namespace nd {
namespace {

TEST(CudaGraphCache, CpuInputsRunTheBodyWithLastingInputsLast) {
  CudaGraphCache cache;
  const at::Tensor a = at::ones({2}), b = at::full({3}, 2.0), lasting = at::full({4}, 3.0);
  std::vector<at::Tensor> seen;
  const at::Tensor out = cache.run(
      {a, at::Tensor(), b},
      [&](const std::vector<at::Tensor>& in) {
        seen = in;
        return in[0].sum() + in[2].sum() + in[3].sum();
      },
      {{lasting, 7}});
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_TRUE(seen[0].is_same(a));
  EXPECT_FALSE(seen[1].defined());
  EXPECT_TRUE(seen[2].is_same(b));
  EXPECT_TRUE(seen[3].is_same(lasting));
  EXPECT_EQ(out.item<float>(), 2.0f + 6.0f + 12.0f);
  EXPECT_EQ(cache.size(), 0u);  // nothing captured on the CPU
}

TEST(CudaGraphCache, SignatureNamesShapesAndAbsentInputs) {
  EXPECT_EQ(tensor_signature({at::Tensor()}), "-|");
  EXPECT_NE(tensor_signature({at::ones({2, 3})}), tensor_signature({at::ones({3, 2})}));
  EXPECT_NE(tensor_signature({at::ones({2})}), tensor_signature({at::ones({2}, at::kDouble)}));
}

}  // namespace
}  // namespace nd
