// A tqdm-style progress bar drawn by the engine itself, so the denoising loop reports progress
// without calling back into Python. Writes to stderr, in place, like tqdm's default.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace nd {

class ProgressBar {
 public:
  ProgressBar(int64_t total, bool enabled, std::string description = "");
  ~ProgressBar();
  void update(int64_t n = 1);

 private:
  void draw();

  int64_t total_;
  int64_t done_ = 0;
  bool enabled_;
  std::string description_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace nd
