#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>

#include "core/errors.h"
#include "io/safetensors.h"

namespace nd::io {
namespace {

// 8-byte little-endian header length, the header, then the data section.
std::string file_bytes(const std::string& header, const std::string& data = "",
                       std::optional<uint64_t> header_len = std::nullopt) {
  const uint64_t n = header_len.value_or(header.size());
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// Parsing must fail with a ValueError that names the origin and contains `needle`.
void expect_rejected(const std::string& bytes, const std::string& needle) {
  try {
    SafetensorsFile::from_bytes(bytes, "bad.safetensors");
    FAIL() << "expected ValueError containing '" << needle << "'";
  } catch (const ValueError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("bad.safetensors"), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

std::string one_tensor(const std::string& entry, const std::string& data) {
  return file_bytes(R"({"t":)" + entry + "}", data);
}

TEST(Safetensors, RejectsFileShorterThan8Bytes) {
  expect_rejected("", "shorter than the 8-byte");
  expect_rejected(std::string(7, '\0'), "shorter than the 8-byte");
}

TEST(Safetensors, RejectsHeaderLengthBeyondFile) {
  expect_rejected(file_bytes("{}", "", 3), "beyond the end of the file");
}

TEST(Safetensors, RejectsHeaderLengthOver100MB) {
  expect_rejected(file_bytes("{}", "", 100'000'001), "exceeds the 100000000-byte limit");
  expect_rejected(file_bytes("{}", "", UINT64_MAX), "exceeds");
}

TEST(Safetensors, RejectsHeaderThatIsNotJson) {
  expect_rejected(file_bytes("{\"t\": "), "not valid JSON");
  expect_rejected(file_bytes("\xff\xfe"), "not valid JSON");
}

TEST(Safetensors, RejectsHeaderThatIsNotAnObject) {
  expect_rejected(file_bytes("[1, 2]"), "not a JSON object");
  expect_rejected(file_bytes("3"), "not a JSON object");
}

TEST(Safetensors, RejectsEntryThatIsNotAnObject) {
  expect_rejected(one_tensor("[1, 2]", ""), "entry is not an object");
}

TEST(Safetensors, RejectsUnknownOrMissingDtype) {
  expect_rejected(one_tensor(R"({"dtype": "F4", "shape": [], "data_offsets": [0, 1]})", "x"),
                  "unknown dtype \"F4\"");
  expect_rejected(one_tensor(R"({"dtype": "f32", "shape": [], "data_offsets": [0, 4]})", "xxxx"),
                  "unknown dtype");
  expect_rejected(one_tensor(R"({"shape": [], "data_offsets": [0, 4]})", "xxxx"), "no dtype");
}

TEST(Safetensors, RejectsShapeThatIsNotAListOfNonNegativeInts) {
  for (const char* shape : {"3", "[-1]", "[1.5]", "[\"2\"]", "null", "[2, 9223372036854775808]"}) {
    expect_rejected(one_tensor(std::string(R"({"dtype": "U8", "data_offsets": [0, 2], "shape": )") +
                                   shape + "}",
                               "xx"),
                    "shape");
  }
  expect_rejected(one_tensor(R"({"dtype": "U8", "data_offsets": [0, 2]})", "xx"), "shape");
}

TEST(Safetensors, RejectsElementCountOverflow) {
  expect_rejected(one_tensor(R"({"dtype": "F64", "shape": [4294967296, 4294967296],
                                 "data_offsets": [0, 0]})",
                             ""),
                  "too many elements");
  // Fits in uint64 as elements, but not once multiplied by the 8-byte dtype size.
  expect_rejected(one_tensor(R"({"dtype": "F64", "shape": [3, 1152921504606846976],
                                 "data_offsets": [0, 0]})",
                             ""),
                  "too many elements");
}

TEST(Safetensors, RejectsBadDataOffsets) {
  for (const char* offsets : {"[0]", "[0, 1, 2]", "[-1, 0]", "[0, 1.0]", "{}", "[\"0\", 1]"}) {
    expect_rejected(
        one_tensor(std::string(R"({"dtype": "U8", "shape": [1], "data_offsets": )") + offsets + "}",
                   "x"),
        "data_offsets is not a pair");
  }
  expect_rejected(one_tensor(R"({"dtype": "U8", "shape": [1]})", "x"), "data_offsets");
}

TEST(Safetensors, RejectsBeginAfterEnd) {
  expect_rejected(one_tensor(R"({"dtype": "U8", "shape": [1], "data_offsets": [2, 1]})", "xx"),
                  "begin after end");
}

TEST(Safetensors, RejectsEndBeyondDataSection) {
  expect_rejected(one_tensor(R"({"dtype": "U8", "shape": [4], "data_offsets": [0, 4]})", "xxx"),
                  "beyond the 3-byte data section");
  expect_rejected(
      one_tensor(R"({"dtype": "U8", "shape": [1], "data_offsets": [0, 18446744073709551615]})", ""),
      "data_offsets");
}

TEST(Safetensors, RejectsByteCountThatDoesNotMatchShape) {
  expect_rejected(one_tensor(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]})", "xxxx"),
                  "holds 4 bytes but dtype F32 and shape [2] need 8");
}

TEST(Safetensors, RejectsOverlappingTensors) {
  const std::string header =
      R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
          "b": {"dtype": "U8", "shape": [4], "data_offsets": [3, 7]}})";
  expect_rejected(file_bytes(header, "0123456"), "tensors 'a' and 'b' overlap");
  const std::string same =
      R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
          "b": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2]}})";
  expect_rejected(file_bytes(same, "01"), "overlap");
}

TEST(Safetensors, RejectsDuplicateNames) {
  // nlohmann would silently keep the last entry; two definitions of a weight is corruption.
  const std::string header =
      R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
          "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})";
  expect_rejected(file_bytes(header, "01"), "tensor name 'a' appears twice");
}

TEST(Safetensors, RejectsMetadataThatIsNotStrings) {
  expect_rejected(file_bytes(R"({"__metadata__": {"format": 1}})"),
                  "__metadata__ value for 'format'");
  expect_rejected(file_bytes(R"({"__metadata__": [1]})"), "__metadata__ is not an object");
}

TEST(Safetensors, ErrorsShowUntrustedNamesEscaped) {
  // A NUL would end e.what() early and a newline could forge a second line of the message.
  const std::string header =
      R"({"a\u0000b": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
          "c\nd": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}})";
  expect_rejected(file_bytes(header, "012"), R"(tensors 'a\u0000b' and 'c\nd' overlap)");
}

struct DTypeCase {
  const char* name;
  DType dtype;
  std::size_t size;
};

TEST(Safetensors, AcceptsEveryDtypeWithItsSize) {
  const DTypeCase cases[] = {
      {"BOOL", DType::BOOL, 1}, {"U8", DType::U8, 1},           {"I8", DType::I8, 1},
      {"I16", DType::I16, 2},   {"U16", DType::U16, 2},         {"F16", DType::F16, 2},
      {"BF16", DType::BF16, 2}, {"I32", DType::I32, 4},         {"U32", DType::U32, 4},
      {"F32", DType::F32, 4},   {"F64", DType::F64, 8},         {"I64", DType::I64, 8},
      {"U64", DType::U64, 8},   {"F8_E4M3", DType::F8_E4M3, 1}, {"F8_E5M2", DType::F8_E5M2, 1},
  };
  for (const DTypeCase& c : cases) {
    EXPECT_EQ(dtype_size(c.dtype), c.size);
    EXPECT_STREQ(dtype_name(c.dtype), c.name);
    const std::size_t bytes = 2 * 3 * c.size;
    std::string data(bytes, '\0');
    for (std::size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>(i);
    const std::string header = std::string(R"({"x": {"dtype": ")") + c.name +
                               R"(", "shape": [2, 3], "data_offsets": [0, )" +
                               std::to_string(bytes) + "]}}";
    const auto file = SafetensorsFile::from_bytes(file_bytes(header, data), c.name);
    ASSERT_EQ(file->tensors().size(), 1u);
    const TensorInfo& t = file->tensors()[0];
    EXPECT_EQ(t.dtype, c.dtype) << c.name;
    EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(std::memcmp(file->data(t), data.data(), bytes), 0) << c.name;
  }
}

TEST(Safetensors, ReadsTensorsSortedWithMetadataEmptyTensorsAndPadding) {
  // Writers pad the header with spaces to align the data section; scalars have shape [].
  const std::string header =
      R"({"b": {"dtype": "F32", "shape": [], "data_offsets": [4, 8]},
          "a": {"dtype": "I16", "shape": [2], "data_offsets": [0, 4]},
          "empty": {"dtype": "F32", "shape": [0, 5], "data_offsets": [4, 4]},
          "__metadata__": {"format": "pt"}}      )";
  const float one = 1.0f;
  std::string data("\x01\x00\x02\x00", 4);
  data.append(reinterpret_cast<const char*>(&one), 4);
  const auto file = SafetensorsFile::from_bytes(file_bytes(header, data), "mem");
  ASSERT_EQ(file->tensors().size(), 3u);
  EXPECT_EQ(file->tensors()[0].name, "a");
  EXPECT_EQ(file->tensors()[1].name, "b");
  EXPECT_EQ(file->tensors()[2].name, "empty");
  EXPECT_EQ(file->metadata().at("format"), "pt");
  const TensorInfo* b = file->find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->shape.empty());
  float got = 0;
  std::memcpy(&got, file->data(*b), 4);
  EXPECT_EQ(got, 1.0f);
  EXPECT_EQ(file->find("missing"), nullptr);
  EXPECT_EQ(file->find("empty")->shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(file->path(), "mem");
}

TEST(Safetensors, AcceptsEmptyHeaderObject) {
  const auto file = SafetensorsFile::from_bytes(file_bytes("{}"), "empty");
  EXPECT_TRUE(file->tensors().empty());
  EXPECT_TRUE(file->metadata().empty());
}

TEST(Safetensors, DataRejectsForeignTensorInfo) {
  const auto file = SafetensorsFile::from_bytes(
      one_tensor(R"({"dtype": "U8", "shape": [1], "data_offsets": [0, 1]})", "x"), "mem");
  TensorInfo forged = file->tensors()[0];
  forged.end = 1000;
  EXPECT_THROW(file->data(forged), ValueError);
}

TEST(Safetensors, OpensFromDiskAndPrivateWritesNeverReachTheFile) {
  const std::string bytes =
      one_tensor(R"({"dtype": "U8", "shape": [4], "data_offsets": [0, 4]})", "abcd");
  const std::string path = write_temp("st_private.safetensors", bytes);
  {
    const auto file = SafetensorsFile::open(path);
    EXPECT_EQ(file->path(), path);
    uint8_t* p = const_cast<uint8_t*>(file->data(file->tensors()[0]));
    EXPECT_EQ(p[0], 'a');
    p[0] = 'z';  // copy-on-write page: no fault, no change on disk
    EXPECT_EQ(p[0], 'z');
  }
  const auto again = SafetensorsFile::open(path);
  EXPECT_EQ(again->data(again->tensors()[0])[0], 'a');
  std::remove(path.c_str());
}

TEST(Safetensors, OpenErrorsNameTheFile) {
  const std::string missing = ::testing::TempDir() + "st_does_not_exist.safetensors";
  try {
    SafetensorsFile::open(missing);
    FAIL() << "expected OSError";
  } catch (const OSError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos);
  }
  EXPECT_THROW(SafetensorsFile::open(::testing::TempDir()), OSError);  // a folder
  const std::string tiny = write_temp("st_tiny.safetensors", "abc");
  try {
    SafetensorsFile::open(tiny);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find(tiny), std::string::npos);
  }
  const std::string empty = write_temp("st_empty.safetensors", "");
  EXPECT_THROW(SafetensorsFile::open(empty), ValueError);
}

}  // namespace
}  // namespace nd::io
