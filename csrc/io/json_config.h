// Reading the JSON files of a diffusers checkpoint (config.json, model_index.json,
// scheduler_config.json, tokenizer files). Files are untrusted: every accessor checks the type and
// names the file and key in its error.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace nd::io {

using Json = nlohmann::json;

// The parser recurses once per nesting level (and so does destroying what it built): text nested
// deeper than this is refused before it is parsed. diffusers' files nest a handful of levels;
// Python's json gives up near 1000.
constexpr int kMaxJsonDepth = 512;

// Whether [ and { nest deeper than `max_depth` in [begin, end), outside strings.
bool json_nests_deeper_than(const char* begin, const char* end, int max_depth);

// The bytes of a checkpoint file: a missing file, or one that is not a regular file (a FIFO or a
// device would block or never end), -> OSError; larger than `max_bytes` -> ValueError.
std::string read_regular_file(const std::string& path, std::size_t max_bytes, const std::string& kind);

// Parses a JSON file. Missing/unreadable file -> OSError; invalid JSON -> ValueError naming the
// file and the byte position. `max_bytes` guards against absurd inputs.
Json read_json_file(const std::string& path, std::size_t max_bytes = std::size_t{256} << 20);

// Parses JSON text; `origin` names the source in errors (ValueError, also for nesting deeper than
// kMaxJsonDepth).
Json parse_json_text(const std::string& text, const std::string& origin);

// A JSON object together with the file it came from, so every lookup error can name both.
class JsonConfig {
 public:
  JsonConfig() = default;
  JsonConfig(Json json, std::string origin);
  static JsonConfig from_file(const std::string& path);

  const Json& json() const { return json_; }
  const std::string& origin() const { return origin_; }
  bool has(const std::string& key) const;
  // True when the key is present and not null.
  bool has_value(const std::string& key) const;

  // Required keys: throw ValueError("missing required key 'k' in FILE") when absent.
  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;

  // Optional keys: return the default when absent or null; a value of the wrong type still throws.
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_double(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::optional<std::string> get_optional_string(const std::string& key) const;
  std::optional<int64_t> get_optional_int(const std::string& key) const;
  std::vector<int64_t> get_int_list(const std::string& key) const;
  std::vector<std::string> get_string_list(const std::string& key) const;
  // Accepts either a single int or a list of ints (diffusers' per-block options), broadcasting a
  // single int to `count` entries and checking a list has exactly `count`.
  std::vector<int64_t> get_int_or_list(const std::string& key, std::size_t count,
                                       std::optional<int64_t> fallback = std::nullopt) const;

  // "unsupported value X for key K in FILE"-style errors from model code.
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const;

 private:
  const Json& at(const std::string& key) const;
  Json json_ = Json::object();
  std::string origin_;
};

}  // namespace nd::io
