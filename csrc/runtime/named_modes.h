// The names of a process-wide switch's modes, listed once per switch: its parser, its names for
// Python, and its starting value from an environment variable all read the one table.
#pragma once

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"

namespace nd {

template <typename Mode>
struct NamedModes {
  const char* what;                                 // the switch in errors: "channels-last mode"
  std::vector<std::pair<const char*, Mode>> modes;  // the first is the default

  // Anything but a listed name throws ValueError naming the value and the choices.
  Mode parse(const std::string& text) const {
    for (const auto& [name, mode] : modes) {
      if (text == name) return mode;
    }
    std::string choices;
    for (std::size_t i = 0; i < modes.size(); ++i) {
      choices += i == 0 ? "" : (i + 1 == modes.size() ? " or " : ", ");
      choices += "'" + std::string(modes[i].first) + "'";
    }
    throw ValueError(std::string(what) + " must be " + choices + ", got '" + text + "'");
  }

  std::string name(Mode mode) const {
    for (const auto& [name, listed] : modes) {
      if (listed == mode) return name;
    }
    return modes.front().first;
  }

  // `variable`'s mode at start-up; unset, empty or unreadable gives the default, since an unreadable
  // setting must not stop the import.
  Mode from_environment(const char* variable) const {
    const char* value = std::getenv(variable);
    if (value == nullptr || *value == '\0') return modes.front().second;
    try {
      return parse(value);
    } catch (const ValueError&) {
      return modes.front().second;
    }
  }
};

}  // namespace nd
