#include "models/weight_loader.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/errors.h"
#include "models/layers.h"

namespace nd {
namespace {

TEST(WeightLoader, WalksKeyTreeAndChecksShapes) {
  io::StateDict sd;
  sd["encoder.layers.0.weight"] = at::ones({4, 3});
  sd["encoder.layers.0.bias"] = at::zeros({4});
  const WeightLoader root(sd, "test.safetensors", at::kDouble);
  const Linear lin = Linear::load(root.child("encoder").child("layers").child("0"), 3, 4);
  EXPECT_EQ(lin.weight.scalar_type(), at::kDouble);
  EXPECT_TRUE(at::allclose(lin.forward(at::ones({2, 3}, at::kDouble)), at::full({2, 4}, 3.0, at::kDouble)));
  EXPECT_THROW(Linear::load(root.child("encoder").child("layers").child("0"), 4, 4), ValueError);
  EXPECT_THROW(Linear::load(root.child("encoder").child("layers").child("1"), 3, 4), ValueError);
}

TEST(WeightLoader, KeepsStoredDtypeWhenUnset) {
  io::StateDict sd;
  sd["w.weight"] = at::ones({2}, at::kHalf);
  sd["w.bias"] = at::ones({2}, at::kHalf);
  const WeightLoader root(sd, "x", std::nullopt);
  EXPECT_EQ(LayerNorm::load(root.child("w"), 2, 1e-5).weight.scalar_type(), at::kHalf);
  EXPECT_EQ(stored_floating_dtype(sd), at::kHalf);
}

TEST(WeightLoader, CastsNonFloatingWeightsToTheCheckpointsFloatingDtype) {
  // Ref: diffusers copies an integer weight into the model's floating parameter and runs.
  io::StateDict sd;
  sd["w.weight"] = at::ones({2}, at::kHalf);
  sd["w.bias"] = at::full({2}, 3, at::kLong);
  const WeightLoader stored(sd, "x", std::nullopt);
  const LayerNorm norm = LayerNorm::load(stored.child("w"), 2, 1e-5);
  EXPECT_EQ(norm.bias.scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(norm.bias, at::full({2}, 3.0, at::kHalf)));
  const WeightLoader asked(sd, "x", at::kFloat);
  EXPECT_EQ(LayerNorm::load(asked.child("w"), 2, 1e-5).bias.scalar_type(), at::kFloat);
}

}  // namespace
}  // namespace nd
