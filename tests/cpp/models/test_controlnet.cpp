// Engine-level checks of ControlNetModel's config: diffusers' keys and defaults, the down half it
// shares with the UNet, and what it refuses. Parity with diffusers lives in
// tests/python/models/test_models_controlnet.py.
#include "models/controlnets/controlnet.h"

#include <gtest/gtest.h>

#include "core/errors.h"

namespace nd {
namespace {

io::JsonConfig config(const std::string& text) {
  return io::JsonConfig(io::parse_json_text(text, "controlnet/config.json"), "controlnet/config.json");
}

TEST(ControlNetConfig, ReadsDiffusersKeysAndDefaults) {
  // A ControlNet's config has no up_block_types: the UNet's down half is all it describes.
  const ControlNetConfig c = ControlNetConfig::from_json(config(
      R"({"block_out_channels": [32, 64, 64], "cross_attention_dim": 32, "attention_head_dim": 8,
          "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
          "controlnet_conditioning_channel_order": "bgr", "class_embed_type": null})"));
  EXPECT_EQ(c.unet.num_blocks(), 3u);
  EXPECT_TRUE(c.unet.up_block_types.empty());
  EXPECT_EQ(c.conditioning_channels, 3);
  EXPECT_EQ(c.conditioning_embedding_out_channels, (std::vector<int64_t>{16, 32, 96, 256}));
  EXPECT_FALSE(c.global_pool_conditions);
  EXPECT_TRUE(c.bgr_conditioning);
}

TEST(ControlNetConfig, RejectsWhatItCannotBuild) {
  const std::string base = R"("block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"])";
  EXPECT_NO_THROW(ControlNetConfig::from_json(config("{" + base + "}")));
  EXPECT_THROW(ControlNetConfig::from_json(config("{" + base + R"(, "mid_block_type": "UNetMidBlock2D"})")),
               ValueError);
  EXPECT_THROW(ControlNetConfig::from_json(config("{" + base + R"(, "controlnet_conditioning_channel_order": "x"})")),
               ValueError);
  EXPECT_THROW(ControlNetConfig::from_json(config("{" + base + R"(, "conditioning_embedding_out_channels": []})")),
               ValueError);
  EXPECT_THROW(ControlNetConfig::from_json(config("{" + base + R"(, "num_class_embeds": 10})")), ValueError);
  EXPECT_THROW(ControlNetConfig::from_json(config("{" + base + R"(, "encoder_hid_dim_type": "image_proj",
                                                                   "encoder_hid_dim": 8})")),
               ValueError);
  // The UNet's own checks still apply to the down half.
  EXPECT_THROW(ControlNetConfig::from_json(config(R"({"block_out_channels": [32, 64],
                                                       "down_block_types": ["CrossAttnDownBlock2D"]})")),
               ValueError);
}

io::JsonConfig unet_config(const std::string& text) {
  return io::JsonConfig(io::parse_json_text(text, "unet/config.json"), "unet/config.json");
}

TEST(UNet2DConditionConfig, NeedsHeadsToDivideChannelsOnlyWhereThereIsAttention) {
  // Kandinsky-style: the first block has no attention, so its 4 channels need not split into 8.
  EXPECT_NO_THROW(UNet2DConditionConfig::from_json(unet_config(
      R"({"block_out_channels": [4, 8], "attention_head_dim": 8, "encoder_hid_dim": 8,
          "encoder_hid_dim_type": "image_proj", "cross_attention_dim": 8, "addition_embed_type": "image",
          "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
          "up_block_types": ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
          "mid_block_type": "UNetMidBlock2DSimpleCrossAttn"})")));
  EXPECT_NO_THROW(UNet2DConditionConfig::from_json(unet_config(
      R"({"block_out_channels": [12, 16], "attention_head_dim": 8,
          "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
          "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"]})")));
  // Where attention is, the channels must split into the heads, and the message names the block.
  try {
    UNet2DConditionConfig::from_json(unet_config(
        R"({"block_out_channels": [12, 16], "attention_head_dim": 8,
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"]})"));
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("down block 0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("attention_head_dim"), std::string::npos) << e.what();
  }
}

TEST(UNet2DConditionConfig, RefusesANegativeTransformerLayerCount) {
  EXPECT_THROW(UNet2DConditionConfig::from_json(unet_config(R"({"transformer_layers_per_block": -1})")), ValueError);
}

TEST(UNet2DConditionConfig, ReadsTheClassEmbeddingOfTheX4Upscaler) {
  const UNet2DConditionConfig c = UNet2DConditionConfig::from_json(
      io::JsonConfig(io::parse_json_text(R"({"num_class_embeds": 1000, "in_channels": 7})", "unet/config.json"),
                     "unet/config.json"));
  EXPECT_EQ(c.num_class_embeds, 1000);
  EXPECT_THROW(UNet2DConditionConfig::from_json(io::JsonConfig(
                   io::parse_json_text(R"({"num_class_embeds": 0})", "unet/config.json"), "unet/config.json")),
               ValueError);
  EXPECT_THROW(UNet2DConditionConfig::from_json(io::JsonConfig(
                   io::parse_json_text(R"({"class_embed_type": "timestep"})", "unet/config.json"), "unet/config.json")),
               ValueError);
}

}  // namespace
}  // namespace nd
