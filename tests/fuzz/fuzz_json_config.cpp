// libFuzzer harness for the JSON config reader (csrc/io/json_config.cpp), built by
// scripts/fuzz.sh.
//
// Each input is the text of a config file (config.json, model_index.json, scheduler_config.json,
// ...). It goes through parse_json_text; if the top level is an object, every JsonConfig accessor
// is called on every key (and on a missing one), and again one level down for nested objects, the
// way model code reads a config. Oracles:
//   - json_nests_deeper_than agrees with the real depth of whatever parsed, at several limits;
//   - text nested deeper than kMaxJsonDepth is always refused with ValueError;
//   - what parsed survives dump() and a re-parse unchanged;
//   - get_int / get_int_list return the stored number exactly or throw (no wrap, no rounding).
//
// nd::Error is a clean rejection. Another std::exception is tolerated unless ND_FUZZ_STRICT=1.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "core/errors.h"
#include "fuzz_common.h"
#include "io/json_config.h"

namespace {

using nd::fuzz::guarded;
using nd::fuzz::strict;

using nd::io::Json;
using nd::io::JsonConfig;

// Nesting depth as json_nests_deeper_than counts it: each array or object is one level.
int depth_of(const Json& j) {
  if (!j.is_structured()) return 0;
  int deepest = 0;
  for (const Json& child : j) {
    const int d = depth_of(child);
    if (d > deepest) deepest = d;
  }
  return deepest + 1;
}

// An integer accessor returns the stored number exactly, or throws: never a wrapped or rounded one.
void check_exact_int(const Json& v, int64_t got) {
  if (v.is_number_unsigned()) {
    ND_FUZZ_CHECK(got >= 0 && static_cast<uint64_t>(got) == v.get<uint64_t>());
  } else if (v.is_number_integer()) {
    ND_FUZZ_CHECK(got == v.get<int64_t>());
  } else {
    ND_FUZZ_CHECK(v.is_number_float() && static_cast<double>(got) == v.get<double>());
  }
}

void exercise_key(const JsonConfig& cfg, const std::string& key) {
  volatile std::size_t sink = 0;
  sink = sink + cfg.has(key) + cfg.has_value(key);
  guarded("get_int", [&] {
    const int64_t got = cfg.get_int(key);
    check_exact_int(cfg.json().at(key), got);
    sink = sink + static_cast<std::size_t>(got);
  });
  guarded("get_double", [&] { sink = sink + (cfg.get_double(key) > 0); });
  guarded("get_bool", [&] { sink = sink + cfg.get_bool(key); });
  guarded("get_string", [&] { sink = sink + cfg.get_string(key).size(); });
  guarded("get_int/fallback", [&] { sink = sink + static_cast<std::size_t>(cfg.get_int(key, 7)); });
  guarded("get_double/fallback", [&] { sink = sink + (cfg.get_double(key, 0.5) > 0); });
  guarded("get_bool/fallback", [&] { sink = sink + cfg.get_bool(key, true); });
  guarded("get_string/fallback", [&] { sink = sink + cfg.get_string(key, "dflt").size(); });
  guarded("get_optional_string", [&] {
    const std::optional<std::string> s = cfg.get_optional_string(key);
    sink = sink + (s ? s->size() : 0);
  });
  guarded("get_optional_int", [&] {
    const std::optional<int64_t> i = cfg.get_optional_int(key);
    sink = sink + (i ? static_cast<std::size_t>(*i) : 0);
  });
  guarded("get_int_list", [&] {
    const std::vector<int64_t> got = cfg.get_int_list(key);
    const Json& list = cfg.json().at(key);
    ND_FUZZ_CHECK(list.is_array() && got.size() == list.size());
    for (std::size_t i = 0; i < got.size(); ++i) check_exact_int(list[i], got[i]);
  });
  guarded("get_string_list", [&] { sink = sink + cfg.get_string_list(key).size(); });
  // diffusers' per-block options: the list's own length (accepted), another count (refused), and
  // the broadcast of a scalar or of the fallback.
  std::size_t own = 3;
  if (cfg.json().contains(key) && cfg.json().at(key).is_array()) {
    own = cfg.json().at(key).size();
  }
  for (std::size_t count : {own, std::size_t{4}}) {
    guarded("get_int_or_list", [&] {
      const std::vector<int64_t> v = cfg.get_int_or_list(key, count);
      ND_FUZZ_CHECK(v.size() == count);
    });
    guarded("get_int_or_list/fallback", [&] {
      const std::vector<int64_t> v = cfg.get_int_or_list(key, count, int64_t{2});
      ND_FUZZ_CHECK(v.size() == count);
    });
  }
  guarded("fail", [&] { cfg.fail(key, "fuzz"); });
  (void)sink;
}

void exercise_config(const JsonConfig& cfg, int levels) {
  int seen = 0;
  for (auto it = cfg.json().begin(); it != cfg.json().end() && seen < 64; ++it, ++seen) {
    exercise_key(cfg, it.key());
    if (levels > 0 && it.value().is_object()) {
      exercise_config(JsonConfig(it.value(), cfg.origin() + "/" + it.key()), levels - 1);
    }
  }
  exercise_key(cfg, "__missing_key__");
  exercise_key(cfg, "");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const char* begin = text.data();
  const char* end = begin + text.size();
  const bool too_deep = nd::io::json_nests_deeper_than(begin, end, nd::io::kMaxJsonDepth);

  std::optional<Json> parsed;
  bool value_error = false;
  try {
    parsed = nd::io::parse_json_text(text, "fuzz.json");
  } catch (const nd::ValueError&) {
    value_error = true;
  } catch (const nd::Error&) {
    value_error = true;
  } catch (const std::exception& e) {
    if (strict()) {
      std::fprintf(stderr, "ND_FUZZ_STRICT: parse_json_text threw a non-nd exception: %s\n",
                   e.what());
      std::abort();
    }
  }
  if (too_deep) ND_FUZZ_CHECK(!parsed && value_error);
  if (!parsed) return 0;

  // The pre-parse depth scan and the parser agree on every valid document. nlohmann stops at the
  // first NUL byte as if the text ended there (a raw NUL is invalid inside a JSON string), so
  // what follows one is never parsed: compare with the scan of the text before it. The scan of
  // the whole text can only see more nesting, never less, so the depth limit stays safe.
  const int depth = depth_of(*parsed);
  ND_FUZZ_CHECK(depth <= nd::io::kMaxJsonDepth);
  const char* parsed_end = begin;
  while (parsed_end < end && *parsed_end != '\0') ++parsed_end;
  for (int limit : {0, 1, 2, depth - 1, depth, depth + 1}) {
    if (limit < 0) continue;
    // The text nests at least as deep as what it parses to (a repeated key drops the earlier,
    // possibly deeper, value), never less.
    if (depth > limit) ND_FUZZ_CHECK(nd::io::json_nests_deeper_than(begin, parsed_end, limit));
  }

  // Serialization round trip.
  guarded("dump", [&] {
    const std::string dumped = parsed->dump();
    ND_FUZZ_CHECK(nd::io::parse_json_text(dumped, "fuzz.json (dumped)") == *parsed);
  });

  if (!parsed->is_object()) {
    bool refused = false;
    try {
      JsonConfig cfg(*parsed, "fuzz.json");
    } catch (const nd::ValueError&) {
      refused = true;
    }
    ND_FUZZ_CHECK(refused);
    return 0;
  }
  const JsonConfig cfg(*parsed, "fuzz.json");
  exercise_config(cfg, 2);
  return 0;
}
