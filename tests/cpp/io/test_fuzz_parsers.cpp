// Mutation fuzzing of the untrusted-file parsers: every input either parses or throws nd::Error.
// Deterministic (fixed seed) so a failure reproduces; any other exception or a crash fails.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/errors.h"
#include "io/checkpoint_files.h"
#include "io/safetensors.h"

namespace nd::io {
namespace {

std::string with_length(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string valid_safetensors() {
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                             R"("b.bias":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},)"
                             R"("c":{"dtype":"I64","shape":[],"data_offsets":[32,40]},)"
                             R"("empty":{"dtype":"BF16","shape":[0,7],"data_offsets":[40,40]}})";
  std::string data(40, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  return with_length(header, data);
}

// One random edit of the kinds that real corruption and hostile files produce.
std::string mutate(std::string s, std::mt19937_64& rng) {
  auto pick = [&](std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(rng() % n); };
  static const char* const kTokens[] = {"-1",
                                        "18446744073709551615",
                                        "9223372036854775807",
                                        "1e400",
                                        "[",
                                        "]",
                                        "{",
                                        "}",
                                        "\"",
                                        ",",
                                        ":",
                                        "null",
                                        "\"F8_E4M3\"",
                                        "\"U64\"",
                                        "0",
                                        "[0,0]",
                                        "\\u0000",
                                        "  "};
  switch (rng() % 8) {
    case 0:  // bit flip
      if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8));
      break;
    case 1:  // truncation
      s.resize(pick(s.size() + 1));
      break;
    case 2:  // header length edit: small delta or an arbitrary 64-bit value
      if (s.size() >= 8) {
        uint64_t n = 0;
        std::memcpy(&n, s.data(), 8);
        n = rng() % 2 ? n + static_cast<uint64_t>(static_cast<int64_t>(rng() % 17) - 8) : rng();
        std::memcpy(s.data(), &n, 8);
      }
      break;
    case 3: {  // offset/shape edit: rewrite one run of digits
      std::vector<std::size_t> digits;
      for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] >= '0' && s[i] <= '9') digits.push_back(i);
      }
      if (!digits.empty()) {
        const std::size_t at = digits[pick(digits.size())];
        std::size_t end = at;
        while (end < s.size() && s[end] >= '0' && s[end] <= '9') ++end;
        s.replace(at, end - at, std::to_string(rng() % 3 ? rng() % 64 : rng()));
      }
      break;
    }
    case 4:  // insert a JSON-ish token
      s.insert(pick(s.size() + 1), kTokens[pick(std::size(kTokens))]);
      break;
    case 5:  // delete a span
      if (!s.empty()) {
        const std::size_t at = pick(s.size());
        s.erase(at, 1 + pick(8));
      }
      break;
    case 6:  // duplicate a span (duplicate keys, repeated entries)
      if (!s.empty()) {
        const std::size_t at = pick(s.size());
        const std::string span = s.substr(at, 1 + pick(40));
        s.insert(pick(s.size() + 1), span);
      }
      break;
    default:  // random byte
      if (!s.empty()) s[pick(s.size())] = static_cast<char>(rng());
      break;
  }
  return s;
}

// Parses and touches every tensor's bytes, so an unchecked offset would read out of bounds
// (and trip ASan / segfault) rather than pass silently.
void parse_safetensors(const std::string& bytes) {
  const auto file = SafetensorsFile::from_bytes(bytes, "fuzz.safetensors");
  uint64_t sum = 0;
  for (const TensorInfo& t : file->tensors()) {
    const uint8_t* p = file->data(t);
    for (uint64_t i = 0; i < t.end - t.begin; ++i) sum += p[i];
    ASSERT_EQ(file->find(t.name), &t);
  }
  (void)sum;
}

TEST(FuzzParsers, SafetensorsMutationsParseOrThrowNdError) {
  std::mt19937_64 rng(20240601);
  const std::string seed = valid_safetensors();
  ASSERT_NO_THROW(parse_safetensors(seed));
  int parsed = 0;
  int rejected = 0;
  for (int i = 0; i < 6000; ++i) {
    std::string input = seed;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) input = mutate(std::move(input), rng);
    try {
      parse_safetensors(input);
      ++parsed;
    } catch (const nd::Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << i << ": non-nd exception " << e.what();
    }
  }
  // Both outcomes must occur, or the mutator is not exercising the parser.
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

TEST(FuzzParsers, JsonAndIndexMutationsParseOrThrowNdError) {
  std::mt19937_64 rng(7);
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / "fuzz_index";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "s1.safetensors") << "x";
  std::ofstream(dir / "s2.safetensors") << "x";
  const std::string index =
      R"({"metadata": {"total_size": 123}, "weight_map": {"a": "s1.safetensors", )"
      R"("b.c": "s2.safetensors", "d": "s1.safetensors"}})";
  const std::string model_index =
      R"({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.40.0", )"
      R"("unet": ["diffusers", "UNet2DConditionModel"], "safety_checker": [null, null], )"
      R"("requires_safety_checker": true})";
  for (int i = 0; i < 1500; ++i) {
    const bool is_index = i % 2 == 0;
    std::string input = is_index ? index : model_index;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) input = mutate(std::move(input), rng);
    try {
      if (is_index) {
        std::ofstream(dir / "model.safetensors.index.json", std::ios::trunc) << input;
        find_weight_files(dir.string(), std::nullopt, std::nullopt);
      } else {
        std::ofstream(dir / "model_index.json", std::ios::trunc) << input;
        read_model_index(dir.string());
      }
    } catch (const nd::Error&) {
    } catch (const std::exception& e) {
      FAIL() << "iteration " << i << ": non-nd exception " << e.what() << " for " << input;
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace nd::io
