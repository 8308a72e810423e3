#include "io/json_config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "core/errors.h"

namespace nd::io {
namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(JsonConfig, ReadsTypedValuesAndDefaults) {
  const JsonConfig c = JsonConfig::from_file(
      write_temp("cfg_ok.json", R"({"a": 3, "b": 1.5, "c": true, "d": "x", "e": [1, 2], "f": null, "g": 2.0})"));
  EXPECT_EQ(c.get_int("a"), 3);
  EXPECT_DOUBLE_EQ(c.get_double("b"), 1.5);
  EXPECT_TRUE(c.get_bool("c"));
  EXPECT_EQ(c.get_string("d"), "x");
  EXPECT_EQ(c.get_int_list("e"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(c.get_int("f", 7), 7);
  EXPECT_EQ(c.get_int("missing", 9), 9);
  EXPECT_EQ(c.get_int("g"), 2);  // integral float written by Python
  EXPECT_EQ(c.get_int_or_list("a", 3), (std::vector<int64_t>{3, 3, 3}));
}

TEST(JsonConfig, ErrorsNameKeyAndFile) {
  const std::string path = write_temp("cfg_bad_types.json", R"({"a": "three", "l": [1, 2]})");
  const JsonConfig c = JsonConfig::from_file(path);
  try {
    c.get_int("a");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'a'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  EXPECT_THROW(c.get_int("missing"), ValueError);
  EXPECT_THROW(c.get_int("a", 1), ValueError);  // wrong type is never silently defaulted
  EXPECT_THROW(c.get_int_or_list("l", 3), ValueError);
}

TEST(JsonConfig, RejectsInvalidJsonAndMissingFiles) {
  EXPECT_THROW(JsonConfig::from_file(write_temp("cfg_invalid.json", "{\"a\": ")), ValueError);
  EXPECT_THROW(JsonConfig::from_file(write_temp("cfg_array.json", "[1, 2]")), ValueError);
  EXPECT_THROW(JsonConfig::from_file(::testing::TempDir() + "does_not_exist.json"), OSError);
}

}  // namespace
}  // namespace nd::io
