#include "io/json_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/errors.h"

namespace nd::io {

bool json_nests_deeper_than(const char* begin, const char* end, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (const char* p = begin; p < end; ++p) {
    const char c = *p;
    if (in_string) {
      if (c == '\\') {
        ++p;  // the escaped character, whatever it is
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

std::string read_regular_file(const std::string& path, std::size_t max_bytes, const std::string& kind) {
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw OSError("cannot open " + kind + " '" + path + "'");
  if (!std::filesystem::is_regular_file(status)) {
    throw OSError("cannot read " + kind + " '" + path + "': not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw OSError("cannot open " + kind + " '" + path + "'");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw OSError("cannot read " + kind + " '" + path + "'");
  if (static_cast<std::size_t>(size) > max_bytes) {
    throw ValueError(kind + " '" + path + "' is " + std::to_string(size) + " bytes, larger than the " +
                     std::to_string(max_bytes) + "-byte limit");
  }
  in.seekg(0, std::ios::beg);
  std::string text(static_cast<std::size_t>(size), '\0');
  if (size > 0 && !in.read(text.data(), size)) throw OSError("cannot read " + kind + " '" + path + "'");
  return text;
}

Json read_json_file(const std::string& path, std::size_t max_bytes) {
  return parse_json_text(read_regular_file(path, max_bytes, "JSON file"), path);
}

Json parse_json_text(const std::string& text, const std::string& origin) {
  // The parser stops at a NUL byte, which would leave whatever follows it unread and unchecked.
  if (text.find('\0') != std::string::npos) {
    throw ValueError("invalid JSON in '" + origin + "': it holds a NUL byte");
  }
  if (json_nests_deeper_than(text.data(), text.data() + text.size(), kMaxJsonDepth)) {
    throw ValueError("invalid JSON in '" + origin + "': nested deeper than " + std::to_string(kMaxJsonDepth) +
                     " levels");
  }
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw ValueError("invalid JSON in '" + origin + "' at byte " + std::to_string(e.byte) + ": " +
                     e.what());
  } catch (const Json::exception& e) {
    // e.g. out_of_range for a number like 1e400: still bad input, never an untranslated error.
    throw ValueError("invalid JSON in '" + origin + "': " + e.what());
  }
}

JsonConfig::JsonConfig(Json json, std::string origin) : json_(std::move(json)), origin_(std::move(origin)) {
  if (!json_.is_object()) throw ValueError("expected a JSON object at the top of '" + origin_ + "'");
}

JsonConfig JsonConfig::from_file(const std::string& path) { return JsonConfig(read_json_file(path), path); }

bool JsonConfig::has(const std::string& key) const { return json_.contains(key); }

bool JsonConfig::has_value(const std::string& key) const {
  return json_.contains(key) && !json_.at(key).is_null();
}

void JsonConfig::fail(const std::string& key, const std::string& problem) const {
  throw ValueError(problem + " for key '" + key + "' in " + origin_);
}

const Json& JsonConfig::at(const std::string& key) const {
  auto it = json_.find(key);
  if (it == json_.end() || it->is_null()) {
    throw ValueError("missing required key '" + key + "' in " + origin_);
  }
  return *it;
}

namespace {

int64_t as_int(const Json& v, const JsonConfig& cfg, const std::string& key) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return static_cast<int64_t>(u);
  } else if (v.is_number_integer()) {
    return v.get<int64_t>();
  } else if (v.is_number_float()) {
    // Configs written by Python sometimes store integral floats (e.g. 1.0); accept exact ones
    // only, and only in [-2^63, 2^63), where the conversion is defined.
    const double d = v.get<double>();
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == std::trunc(d)) {
      return static_cast<int64_t>(d);
    }
  }
  cfg.fail(key, "expected an integer, got " + v.dump());
}

double as_double(const Json& v, const JsonConfig& cfg, const std::string& key) {
  if (v.is_number()) return v.get<double>();
  cfg.fail(key, "expected a number, got " + v.dump());
}

bool as_bool(const Json& v, const JsonConfig& cfg, const std::string& key) {
  if (v.is_boolean()) return v.get<bool>();
  cfg.fail(key, "expected true or false, got " + v.dump());
}

std::string as_string(const Json& v, const JsonConfig& cfg, const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  cfg.fail(key, "expected a string, got " + v.dump());
}

}  // namespace

int64_t JsonConfig::get_int(const std::string& key) const { return as_int(at(key), *this, key); }
double JsonConfig::get_double(const std::string& key) const { return as_double(at(key), *this, key); }
bool JsonConfig::get_bool(const std::string& key) const { return as_bool(at(key), *this, key); }
std::string JsonConfig::get_string(const std::string& key) const {
  return as_string(at(key), *this, key);
}

int64_t JsonConfig::get_int(const std::string& key, int64_t fallback) const {
  return has_value(key) ? get_int(key) : fallback;
}
double JsonConfig::get_double(const std::string& key, double fallback) const {
  return has_value(key) ? get_double(key) : fallback;
}
bool JsonConfig::get_bool(const std::string& key, bool fallback) const {
  return has_value(key) ? get_bool(key) : fallback;
}
std::string JsonConfig::get_string(const std::string& key, const std::string& fallback) const {
  return has_value(key) ? get_string(key) : fallback;
}
std::optional<std::string> JsonConfig::get_optional_string(const std::string& key) const {
  if (!has_value(key)) return std::nullopt;
  return get_string(key);
}
std::optional<int64_t> JsonConfig::get_optional_int(const std::string& key) const {
  if (!has_value(key)) return std::nullopt;
  return get_int(key);
}

std::vector<int64_t> JsonConfig::get_int_list(const std::string& key) const {
  const Json& v = at(key);
  if (!v.is_array()) fail(key, "expected a list of integers, got " + v.dump());
  std::vector<int64_t> out;
  for (const Json& item : v) out.push_back(as_int(item, *this, key));
  return out;
}

std::vector<std::string> JsonConfig::get_string_list(const std::string& key) const {
  const Json& v = at(key);
  if (!v.is_array()) fail(key, "expected a list of strings, got " + v.dump());
  std::vector<std::string> out;
  for (const Json& item : v) out.push_back(as_string(item, *this, key));
  return out;
}

std::vector<int64_t> JsonConfig::get_int_or_list(const std::string& key, std::size_t count,
                                                 std::optional<int64_t> fallback) const {
  if (!has_value(key)) {
    if (!fallback) at(key);  // throws the missing-key error
    return std::vector<int64_t>(count, *fallback);
  }
  const Json& v = json_.at(key);
  if (!v.is_array()) return std::vector<int64_t>(count, as_int(v, *this, key));
  std::vector<int64_t> out = get_int_list(key);
  if (out.size() != count) {
    fail(key, "expected " + std::to_string(count) + " entries, got " + std::to_string(out.size()));
  }
  return out;
}

}  // namespace nd::io
