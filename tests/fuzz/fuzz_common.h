// What the libFuzzer harnesses share: an invariant check that aborts (so libFuzzer records the
// input), and the rule that an engine error is a clean rejection while any other exception is one
// too unless ND_FUZZ_STRICT=1.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "core/errors.h"

#define ND_FUZZ_CHECK(cond)                                                               \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

namespace nd::fuzz {

inline bool strict() {
  static const bool value = [] {
    const char* v = std::getenv("ND_FUZZ_STRICT");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return value;
}

// Runs `f`; nd::Error is a clean rejection, another std::exception too unless strict().
template <typename F>
void guarded(const char* what, F&& f) {
  try {
    f();
  } catch (const nd::Error&) {
  } catch (const std::exception& e) {
    if (strict()) {
      std::fprintf(stderr, "ND_FUZZ_STRICT: %s threw a non-nd exception: %s\n", what, e.what());
      std::abort();
    }
  }
}

}  // namespace nd::fuzz
