// Engine-level checks of the VQModel (MoVQ) pieces that need no reference library: config
// validation and the VectorQuantizer's nearest-codebook snap. Parity with diffusers lives in
// tests/python/models/test_models_vq.py.
#include "models/autoencoders/vq_model.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/errors.h"

namespace nd {
namespace {

io::JsonConfig config(const std::string& text) {
  return io::JsonConfig(io::parse_json_text(text, "vq/config.json"), "vq/config.json");
}

TEST(VQModelConfig, ReadsDiffusersKeysAndDefaults) {
  const VQModelConfig c = VQModelConfig::from_json(config(
      R"({"block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
          "up_block_types": ["AttnUpDecoderBlock2D", "UpDecoderBlock2D"], "latent_channels": 4,
          "norm_type": "spatial", "vq_embed_dim": null, "num_vq_embeddings": 12})"));
  EXPECT_EQ(c.vq_embed_dim, 4);  // null: latent_channels
  EXPECT_TRUE(c.spatial_norm);
  EXPECT_EQ(c.scale_factor(), 2);
  EXPECT_DOUBLE_EQ(c.scaling_factor, 0.18215);
}

TEST(VQModelConfig, RejectsWhatItCannotBuild) {
  EXPECT_THROW(VQModelConfig::from_json(config(R"({"lookup_from_codebook": true})")), ValueError);
  EXPECT_THROW(VQModelConfig::from_json(config(R"({"norm_type": "ada_group"})")), ValueError);
  EXPECT_THROW(VQModelConfig::from_json(config(R"({"down_block_types": ["SkipDownBlock2D"]})")), ValueError);
  EXPECT_THROW(VQModelConfig::from_json(config(R"({"block_out_channels": [32, 64]})")), ValueError);
  // The spatial norms read vq_embed_dim channels through convs built for latent_channels.
  EXPECT_THROW(VQModelConfig::from_json(config(R"({"norm_type": "spatial", "latent_channels": 4,
                                                    "vq_embed_dim": 3})")),
               ValueError);
}

TEST(VectorQuantizer, SnapsToNearestCodebookVector) {
  io::StateDict sd;
  sd["q.embedding.weight"] = at::tensor({0.0, 0.0, 1.0, 1.0, -2.0, 3.0}, at::kFloat).view({3, 2});
  const WeightLoader w(sd, "x", std::nullopt);
  const VectorQuantizer q = VectorQuantizer::load(w.child("q"), 3, 2, 0.25);
  // Three pixels [pixel, channel], each near a different codebook entry, as [1, 2, 1, 3].
  const at::Tensor z = at::tensor({0.1, 0.2, -1.8, 2.7, 1.2, 0.9}, at::kFloat).view({1, 3, 2}).permute({0, 2, 1})
                           .reshape({1, 2, 1, 3});
  const auto [z_q, loss] = q.forward(z);
  const at::Tensor expected = at::tensor({0.0, 0.0, -2.0, 3.0, 1.0, 1.0}, at::kFloat).view({1, 3, 2})
                                  .permute({0, 2, 1}).reshape({1, 2, 1, 3});
  EXPECT_TRUE(at::allclose(z_q, expected, 1e-6, 1e-6));
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_NEAR(loss.item<double>(), 1.25 * at::mean(at::pow(expected - z, 2)).item<double>(), 1e-6);
}

}  // namespace
}  // namespace nd
