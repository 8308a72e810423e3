#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "io/checkpoint_files.h"

namespace nd::io {
namespace {
namespace fs = std::filesystem;

// A fresh folder per test, so tests never see each other's files.
class CheckpointFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) / (std::string("ckpt_") + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string touch(const std::string& name, const std::string& text = "x") {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string dir() const { return dir_.string(); }

  // The OSError/ValueError text of find_weight_files, or "" if it did not throw.
  template <typename E>
  std::string error_of(const std::optional<std::string>& variant, std::optional<bool> use_st) {
    try {
      find_weight_files(dir(), variant, use_st);
    } catch (const E& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected an error";
    return "";
  }

  fs::path dir_;
};

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

TEST_F(CheckpointFiles, AddVariantMatchesDiffusers) {
  EXPECT_EQ(add_variant("diffusion_pytorch_model.safetensors", "fp16"),
            "diffusion_pytorch_model.fp16.safetensors");
  EXPECT_EQ(add_variant("diffusion_pytorch_model.safetensors.index.json", "fp16"),
            "diffusion_pytorch_model.safetensors.index.fp16.json");
  EXPECT_EQ(add_variant("model.safetensors", std::nullopt), "model.safetensors");
}

TEST_F(CheckpointFiles, FindsDiffusersAndTransformersSingleFiles) {
  const std::string st = touch("diffusion_pytorch_model.safetensors");
  WeightFiles w = find_weight_files(dir(), std::nullopt, std::nullopt);
  EXPECT_EQ(w.format, WeightFiles::Safetensors);
  EXPECT_EQ(w.files, std::vector<std::string>{st});
  fs::remove(st);
  const std::string model = touch("model.safetensors");
  EXPECT_EQ(find_weight_files(dir(), std::nullopt, true).files, std::vector<std::string>{model});
}

TEST_F(CheckpointFiles, PrefersSafetensorsOverBinUnlessTurnedOff) {
  const std::string st = touch("diffusion_pytorch_model.safetensors");
  const std::string bin = touch("diffusion_pytorch_model.bin");
  EXPECT_EQ(find_weight_files(dir(), std::nullopt, std::nullopt).files[0], st);
  const WeightFiles w = find_weight_files(dir(), std::nullopt, false);
  EXPECT_EQ(w.format, WeightFiles::PickleBin);
  EXPECT_EQ(w.files[0], bin);
}

TEST_F(CheckpointFiles, FallsBackToBinWhenSafetensorsUnset) {
  const std::string bin = touch("pytorch_model.bin");
  const WeightFiles w = find_weight_files(dir(), std::nullopt, std::nullopt);
  EXPECT_EQ(w.format, WeightFiles::PickleBin);
  EXPECT_EQ(w.files, std::vector<std::string>{bin});
}

TEST_F(CheckpointFiles, UseSafetensorsTrueWithOnlyBinIsOSError) {
  touch("diffusion_pytorch_model.bin");
  const std::string msg = error_of<OSError>(std::nullopt, true);
  EXPECT_TRUE(contains(msg, "no safetensors weights found in " + dir())) << msg;
  EXPECT_TRUE(contains(msg, "diffusion_pytorch_model.bin")) << msg;
}

TEST_F(CheckpointFiles, UseSafetensorsFalseWithOnlySafetensorsIsOSError) {
  touch("model.safetensors");
  const std::string msg = error_of<OSError>(std::nullopt, false);
  EXPECT_TRUE(contains(msg, "pytorch_model.bin")) << msg;
  EXPECT_FALSE(contains(msg, "model.safetensors,")) << msg;
}

TEST_F(CheckpointFiles, FindsVariantFiles) {
  touch("diffusion_pytorch_model.safetensors");
  const std::string fp16 = touch("diffusion_pytorch_model.fp16.safetensors");
  EXPECT_EQ(find_weight_files(dir(), "fp16", std::nullopt).files[0], fp16);
  const std::string bin16 = touch("pytorch_model.fp16.bin");
  EXPECT_EQ(find_weight_files(dir(), "fp16", false).files[0], bin16);
}

TEST_F(CheckpointFiles, MissingVariantIsOSErrorThatPointsAtNonVariantWeights) {
  touch("diffusion_pytorch_model.safetensors");
  const std::string msg = error_of<OSError>("fp16", std::nullopt);
  EXPECT_TRUE(contains(msg, "Error no file named ")) << msg;
  EXPECT_TRUE(contains(msg, "diffusion_pytorch_model.fp16.safetensors,")) << msg;
  EXPECT_TRUE(contains(msg, "variant='fp16'")) << msg;
  EXPECT_TRUE(contains(msg, "pass variant=None")) << msg;
}

TEST_F(CheckpointFiles, NothingFoundListsEveryNameLookedFor) {
  touch("config.json", "{}");
  const std::string msg = error_of<OSError>(std::nullopt, std::nullopt);
  EXPECT_TRUE(contains(msg, dir())) << msg;
  for (const char* name :
       {"diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
        "model.safetensors", "model.safetensors.index.json", "diffusion_pytorch_model.bin",
        "pytorch_model.bin", "pytorch_model.bin.index.json"}) {
    EXPECT_TRUE(contains(msg, name)) << name << " not in: " << msg;
  }
  EXPECT_THROW(find_weight_files(path("nope"), std::nullopt, std::nullopt), OSError);
  EXPECT_THROW(find_weight_files(dir(), std::string("../x"), std::nullopt), ValueError);
}

TEST_F(CheckpointFiles, ShardedIndexReturnsUniqueSortedShards) {
  const std::string b = touch("diffusion_pytorch_model-00002-of-00002.safetensors");
  const std::string a = touch("diffusion_pytorch_model-00001-of-00002.safetensors");
  touch("diffusion_pytorch_model.safetensors.index.json",
        R"({"metadata": {}, "weight_map": {
             "x": "diffusion_pytorch_model-00002-of-00002.safetensors",
             "y": "diffusion_pytorch_model-00001-of-00002.safetensors",
             "z": "diffusion_pytorch_model-00002-of-00002.safetensors"}})");
  const WeightFiles w = find_weight_files(dir(), std::nullopt, std::nullopt);
  EXPECT_EQ(w.format, WeightFiles::Safetensors);
  EXPECT_EQ(w.files, (std::vector<std::string>{a, b}));
}

TEST_F(CheckpointFiles, ShardedVariantAndLegacyVariantIndexes) {
  const std::string s = touch("model-00001-of-00001.fp16.safetensors");
  touch("diffusion_pytorch_model.safetensors.fp16.index.json",
        R"({"weight_map": {"x": "model-00001-of-00001.fp16.safetensors"}})");
  EXPECT_EQ(find_weight_files(dir(), "fp16", true).files, std::vector<std::string>{s});
  touch("model.safetensors.index.fp16.json",
        R"({"weight_map": {"x": "model-00001-of-00001.fp16.safetensors"}})");
  EXPECT_EQ(find_weight_files(dir(), "fp16", true).files, std::vector<std::string>{s});
  const std::string bin = touch("pytorch_model-1.bin");
  touch("pytorch_model.bin.index.json", R"({"weight_map": {"x": "pytorch_model-1.bin"}})");
  const WeightFiles w = find_weight_files(dir(), std::nullopt, false);
  EXPECT_EQ(w.format, WeightFiles::PickleBin);
  EXPECT_EQ(w.files, std::vector<std::string>{bin});
}

TEST_F(CheckpointFiles, IndexRejectsShardNamesThatLeaveTheFolder) {
  for (const char* shard : {"../evil.safetensors", "/etc/passwd.safetensors", "sub/x.safetensors",
                            "..", "a\\\\b.safetensors", "nul\\u0000.safetensors", ""}) {
    touch("model.safetensors.index.json",
          std::string(R"({"weight_map": {"x": ")") + shard + "\"}}");
    const std::string msg = error_of<ValueError>(std::nullopt, std::nullopt);
    EXPECT_TRUE(contains(msg, "plain filenames")) << shard << ": " << msg;
  }
}

TEST_F(CheckpointFiles, IndexRejectsMalformedContent) {
  const std::string index = "diffusion_pytorch_model.safetensors.index.json";
  for (const char* text :
       {"[]", "{}", R"({"weight_map": []})", R"({"weight_map": {}})", R"({"weight_map": {"x": 3}})",
        R"({"weight_map": {"x": "a.bin"}})", R"({"weight_map": {"x": 1e400}})", "{not json"}) {
    touch(index, text);
    const std::string msg = error_of<ValueError>(std::nullopt, std::nullopt);
    EXPECT_TRUE(contains(msg, index)) << text << ": " << msg;
  }
}

TEST_F(CheckpointFiles, IndexWithMissingShardIsOSError) {
  touch("model.safetensors.index.json", R"({"weight_map": {"x": "gone.safetensors"}})");
  const std::string msg = error_of<OSError>(std::nullopt, std::nullopt);
  EXPECT_TRUE(contains(msg, "does not appear to have a file named gone.safetensors")) << msg;
}

TEST_F(CheckpointFiles, ReadsModelIndex) {
  touch("model_index.json", R"({
    "_class_name": "StableDiffusionImg2ImgPipeline", "_diffusers_version": "0.40.0",
    "requires_safety_checker": true,
    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    "safety_checker": [null, null], "image_encoder": [null, null]})");
  const ModelIndex index = read_model_index(dir());
  EXPECT_EQ(index.class_name, "StableDiffusionImg2ImgPipeline");
  EXPECT_EQ(index.diffusers_version, "0.40.0");
  ASSERT_EQ(index.components.size(), 2u);
  EXPECT_EQ(index.components.at("unet"),
            std::make_pair(std::string("diffusers"), std::string("UNet2DConditionModel")));
  EXPECT_EQ(index.null_components, (std::vector<std::string>{"image_encoder", "safety_checker"}));
  EXPECT_TRUE(index.raw.at("requires_safety_checker").get<bool>());
}

TEST_F(CheckpointFiles, ModelIndexErrors) {
  EXPECT_THROW(read_model_index(dir()), OSError);
  for (const char* text :
       {"[]", R"({"unet": ["diffusers", "UNet2DConditionModel"]})", R"({"_class_name": 3})",
        R"({"_class_name": "P", "unet": ["diffusers"]})",
        R"({"_class_name": "P", "unet": ["diffusers", null]})",
        R"({"_class_name": "P", "unet": [1, 2]})", "{"}) {
    touch("model_index.json", text);
    try {
      read_model_index(dir());
      ADD_FAILURE() << "accepted " << text;
    } catch (const ValueError& e) {
      EXPECT_TRUE(contains(e.what(), "model_index.json")) << e.what();
    }
  }
}

TEST_F(CheckpointFiles, ComponentDir) {
  fs::create_directories(dir_ / "unet");
  EXPECT_EQ(component_dir(dir(), "unet"), path("unet"));
  try {
    component_dir(dir(), "vae");
    ADD_FAILURE() << "expected OSError";
  } catch (const OSError& e) {
    EXPECT_TRUE(contains(e.what(), "missing component folder 'vae'")) << e.what();
  }
  EXPECT_THROW(component_dir(dir(), ".."), ValueError);
  EXPECT_THROW(component_dir(dir(), "a/b"), ValueError);
  EXPECT_THROW(component_dir(dir(), std::string("unet\0x", 6)), ValueError);
}

}  // namespace
}  // namespace nd::io
