// One exception hierarchy for the whole engine. The bindings map each class to the Python
// exception of the same name, so C++ code chooses the error a diffusers user would expect.
#pragma once

#include <stdexcept>
#include <string>

namespace nd {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A value is out of range, malformed or inconsistent (maps to ValueError).
class ValueError : public Error {
 public:
  using Error::Error;
};

// An argument has the wrong kind (maps to TypeError).
class TypeError : public Error {
 public:
  using Error::Error;
};

// A file or folder is missing or unreadable (maps to OSError).
class OSError : public Error {
 public:
  using Error::Error;
};

}  // namespace nd
