// A tqdm-style progress bar drawn by the engine itself, so the denoising loop reports progress
// without calling back into Python. Writes to stderr, in place, like tqdm's default.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace nd {

// The tqdm options diffusers' set_progress_bar_config passes on that change what is drawn.
struct ProgressBarOptions {
  bool disable = false;
  std::string desc;   // drawn before the bar, followed by ": " as tqdm does
  bool leave = true;  // keep the finished bar on screen; false erases its line
  int64_t position = 0;  // the line below the cursor to draw on (tqdm's nested bars)
};

class ProgressBar {
 public:
  ProgressBar(int64_t total, const ProgressBarOptions& options);
  ~ProgressBar();
  void update(int64_t n = 1);

 private:
  void draw();

  int64_t total_;
  int64_t done_ = 0;
  bool enabled_;
  ProgressBarOptions options_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace nd
