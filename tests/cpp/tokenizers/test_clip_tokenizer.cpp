// CLIPTokenizer on hand-built vocabularies; parity with transformers on the real CLIP vocabulary
// lives in tests/python/models/test_tokenization_clip.py.
#include "tokenizers/clip_tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/errors.h"

namespace nd {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int64_t>;

// A toy vocabulary in byte-level form. Ids are chosen so each test can name them.
CLIPTokenizer::Vocab toy_vocab() {
  return {
      {"a", 0},       {"b", 1},        {"c", 2},     {"a</w>", 3},         {"b</w>", 4},
      {"c</w>", 5},   {"ab", 6},       {"ab</w>", 7}, {"abc</w>", 8},      {"!</w>", 9},
      {"!", 10},      {"1</w>", 11},   {"'s</w>", 12}, {"'", 13},          {"s</w>", 14},
      {"bc</w>", 15}, {"<|startoftext|>", 16},          {"<|endoftext|>", 17}, {"!!</w>", 18},
  };
}

// Rank order matters: "b c</w>" outranks "a b", so "abc" becomes a + bc</w>, not ab + c</w>.
CLIPTokenizer::Merges toy_merges() {
  return {{"b", "c</w>"}, {"a", "b"}, {"a", "b</w>"}, {"'", "s</w>"}, {"!", "!</w>"}};
}

CLIPTokenizer toy(std::optional<int64_t> model_max_length = 8) {
  return CLIPTokenizer(toy_vocab(), toy_merges(), CLIPSpecialTokens{}, model_max_length);
}

TEST(CLIPTokenizerTest, MergesApplyByRank) {
  const CLIPTokenizer tok = toy();
  EXPECT_EQ(tok.encode("abc"), (Ids{0, 15}));
  EXPECT_EQ(tok.encode("ab"), (Ids{7}));
  EXPECT_EQ(tok.encode("abab"), (Ids{6, 7}));
  EXPECT_EQ(tok.encode("a b c"), (Ids{3, 4, 5}));
}

TEST(CLIPTokenizerTest, RepeatedMergeTakesItsLastRank) {
  const CLIPTokenizer once(toy_vocab(), {{"a", "b"}, {"b", "c</w>"}});
  EXPECT_EQ(once.encode("abc"), (Ids{6, 5}));
  // Checked against transformers: the repeat demotes "a b" below "b c</w>".
  const CLIPTokenizer twice(toy_vocab(), {{"a", "b"}, {"b", "c</w>"}, {"a", "b"}});
  EXPECT_EQ(twice.encode("abc"), (Ids{0, 15}));
}

TEST(CLIPTokenizerTest, NormalizesCaseAndWhitespace) {
  const CLIPTokenizer tok = toy();
  EXPECT_EQ(tok.encode("  AB\t\n\u3000C  "), (Ids{7, 5}));
  EXPECT_EQ(tok.encode("A's"), (Ids{3, 12}));
}

TEST(CLIPTokenizerTest, SplitsDigitsAndPunctuation) {
  const CLIPTokenizer tok = toy();
  EXPECT_EQ(tok.encode("a!!"), (Ids{3, 18}));
  EXPECT_EQ(tok.encode("11"), (Ids{11, 11}));
}

TEST(CLIPTokenizerTest, UnknownSymbolsBecomeUnk) {
  const CLIPTokenizer tok = toy();
  // "z" is not in the toy vocabulary; each unknown symbol stands alone (fuse_unk=False).
  EXPECT_EQ(tok.encode("zz"), (Ids{17, 17}));
  EXPECT_EQ(tok.unk_token_id(), 17);
}

TEST(CLIPTokenizerTest, SpecialTokensInTextAreNotSplit) {
  const CLIPTokenizer tok = toy();
  EXPECT_EQ(tok.encode("a<|endoftext|>b"), (Ids{3, 17, 4}));
  EXPECT_EQ(tok.bos_token_id(), 16);
  EXPECT_EQ(tok.eos_token_id(), 17);
  EXPECT_EQ(tok.pad_token_id(), 17);
  EXPECT_EQ(tok.vocab_size(), 19);
  EXPECT_EQ(tok.size(), 19);
}

TEST(CLIPTokenizerTest, PadTokenOutsideTheSpecialsSplitsText) {
  CLIPSpecialTokens specials;
  specials.pad_token = AddedToken{"!"};
  const CLIPTokenizer tok(toy_vocab(), toy_merges(), specials, 8);
  // SDXL's tokenizer_2 pads with "!", which transformers registers as an added special token.
  EXPECT_EQ(tok.encode("a!!"), (Ids{3, 10, 10}));
  EXPECT_EQ(tok.pad_token_id(), 10);
}

TEST(CLIPTokenizerTest, TruncationKeepsBosAndEos) {
  const CLIPTokenizer tok = toy(5);
  const CLIPBatchEncoding enc =
      tok({"a b c a b c", "a"}, PaddingStrategy::kMaxLength, /*truncation=*/true);
  EXPECT_EQ(enc.input_ids[0], (Ids{16, 3, 4, 5, 17}));
  EXPECT_EQ(enc.input_ids[1], (Ids{16, 3, 17, 17, 17}));
  EXPECT_EQ(enc.attention_mask[1], (Ids{1, 1, 1, 0, 0}));
  // Shorter than bos + eos: transformers leaves the sequence untruncated.
  EXPECT_EQ(tok({"a b"}, PaddingStrategy::kDoNotPad, true, 1).input_ids[0], (Ids{16, 3, 4, 17}));
  EXPECT_EQ(tok({"a b"}, PaddingStrategy::kDoNotPad, true, 2).input_ids[0], (Ids{16, 17}));
}

TEST(CLIPTokenizerTest, PaddingLongestAndNoPadding) {
  const CLIPTokenizer tok = toy();
  const CLIPBatchEncoding longest = tok({"a b", "a"}, PaddingStrategy::kLongest);
  EXPECT_EQ(longest.input_ids[1], (Ids{16, 3, 17, 17}));
  EXPECT_EQ(longest.attention_mask[1], (Ids{1, 1, 1, 0}));
  const CLIPBatchEncoding none = tok({"a b c a b c a b c"});
  EXPECT_EQ(none.input_ids[0].size(), 11u);
  // max_length without padding implies truncation, as in transformers.
  const CLIPBatchEncoding implied =
      tok({"a b c a b c"}, PaddingStrategy::kDoNotPad, std::nullopt, 4);
  EXPECT_EQ(implied.input_ids[0], (Ids{16, 3, 4, 17}));
  // padding="max_length" with an explicit max_length but no truncation leaves long text alone.
  const CLIPBatchEncoding untruncated =
      tok({"a b c a b c"}, PaddingStrategy::kMaxLength, std::nullopt, 4);
  EXPECT_EQ(untruncated.input_ids[0].size(), 8u);
}

TEST(CLIPTokenizerTest, UnboundedModelMaxLengthDisablesImplicitLimits) {
  const CLIPTokenizer tok = toy(std::nullopt);
  const CLIPBatchEncoding enc = tok({"a b c a b c a b c"}, PaddingStrategy::kMaxLength, true);
  EXPECT_EQ(enc.input_ids[0].size(), 11u);
}

TEST(CLIPTokenizerTest, DecodeReversesByteLevel) {
  const CLIPTokenizer tok = toy();
  EXPECT_EQ(tok.decode({16, 7, 5, 17}), "<|startoftext|>ab c <|endoftext|>");
  EXPECT_EQ(tok.decode({16, 7, 5, 17}, /*skip_special_tokens=*/true), "ab c");
}

TEST(CLIPTokenizerTest, RejectsInvalidUtf8) {
  const CLIPTokenizer tok = toy();
  EXPECT_THROW(tok.encode("a\xff"), ValueError);
  EXPECT_THROW(tok.encode("\xed\xa0\x80"), ValueError);  // an encoded surrogate
  EXPECT_THROW(tok.encode("\xe2\x82"), ValueError);      // truncated sequence
}

TEST(CLIPTokenizerTest, RejectsMergesOutsideVocabulary) {
  EXPECT_THROW(CLIPTokenizer(toy_vocab(), {{"a", "z"}}), ValueError);
  EXPECT_THROW(CLIPTokenizer(toy_vocab(), {{"c", "a"}}), ValueError);  // "ca" missing
}

class CLIPTokenizerFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("nd_clip_tok_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  void write_toy_files() {
    write("vocab.json",
          R"({"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 4, "!</w>": 5, "!": 6,)"
          R"( "<|startoftext|>": 7, "<|endoftext|>": 8})");
    write("merges.txt", "#version: 0.2\na b</w>\n");
  }
  fs::path dir_;
};

TEST_F(CLIPTokenizerFolderTest, LoadsVocabMergesAndConfig) {
  write_toy_files();
  write("tokenizer_config.json",
        R"({"model_max_length": 6, "bos_token": {"__type": "AddedToken",)"
        R"( "content": "<|startoftext|>",)"
        R"( "normalized": true}, "pad_token": "!"})");
  const CLIPTokenizer tok = CLIPTokenizer::from_folder(dir_.string());
  EXPECT_EQ(tok.model_max_length(), 6);
  EXPECT_EQ(tok.pad_token_id(), 6);
  EXPECT_EQ(tok.encode("AB a"), (Ids{4, 2}));
  // A normalized special token is also found after lowercasing.
  EXPECT_EQ(tok.encode("<|STARTOFTEXT|>"), (Ids{7}));
  const CLIPBatchEncoding enc = tok({"ab"}, PaddingStrategy::kMaxLength, true);
  EXPECT_EQ(enc.input_ids[0], (Ids{7, 4, 8, 6, 6, 6}));
}

TEST_F(CLIPTokenizerFolderTest, LoadsTokenizerJson) {
  write("tokenizer.json",
        R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "a</w>": 2, "b</w>": 3,)"
        R"( "ab</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6}, "merges": [["a", "b</w>"]]},)"
        R"( "added_tokens": [{"id": 5, "content": "<|startoftext|>", "special": true},)"
        R"( {"id": 6, "content": "<|endoftext|>", "special": true}]})");
  const CLIPTokenizer tok = CLIPTokenizer::from_folder(dir_.string());
  EXPECT_EQ(tok.encode("ab"), (Ids{4}));
  EXPECT_FALSE(tok.model_max_length().has_value());
  EXPECT_EQ(tok.bos_token_id(), 5);
}

TEST_F(CLIPTokenizerFolderTest, MissingFilesAreOSError) {
  EXPECT_THROW(CLIPTokenizer::from_folder((dir_ / "nope").string()), OSError);
  EXPECT_THROW(CLIPTokenizer::from_folder(dir_.string()), OSError);
}

TEST_F(CLIPTokenizerFolderTest, MalformedFilesAreValueErrorNamingTheFile) {
  write_toy_files();
  write("merges.txt", "#version: 0.2\na b</w> extra\n");
  try {
    CLIPTokenizer::from_folder(dir_.string());
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("merges.txt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
  write_toy_files();
  write("vocab.json", R"({"a": "zero"})");
  EXPECT_THROW(CLIPTokenizer::from_folder(dir_.string()), ValueError);
  write("vocab.json", "[1, 2]");
  EXPECT_THROW(CLIPTokenizer::from_folder(dir_.string()), ValueError);
  write("vocab.json", "{\"a\": 0,");
  EXPECT_THROW(CLIPTokenizer::from_folder(dir_.string()), ValueError);
  write_toy_files();
  write("tokenizer_config.json", R"({"model_max_length": "77"})");
  EXPECT_THROW(CLIPTokenizer::from_folder(dir_.string()), ValueError);
  write("tokenizer_config.json", R"({"pad_token": 3})");
  EXPECT_THROW(CLIPTokenizer::from_folder(dir_.string()), ValueError);
}

}  // namespace
}  // namespace nd
