#include "core/progress_bar.h"

#include <cstdio>

namespace nd {
namespace {

// tqdm draws a bar at `position` by moving that many lines down, drawing, and moving back up.
void move_down(int64_t lines) {
  for (int64_t i = 0; i < lines; ++i) std::fputc('\n', stderr);
}
void move_up(int64_t lines) {
  for (int64_t i = 0; i < lines; ++i) std::fputs("\x1b[A", stderr);
}

}  // namespace

ProgressBar::ProgressBar(int64_t total, const ProgressBarOptions& options)
    : total_(total), enabled_(!options.disable && total > 0), options_(options),
      start_(std::chrono::steady_clock::now()) {
  if (options_.position < 0) options_.position = 0;
  if (enabled_) draw();
}

ProgressBar::~ProgressBar() {
  if (!enabled_) return;
  move_down(options_.position);
  if (options_.leave) {
    std::fputc('\n', stderr);  // keep the last drawn state, end its line
  } else {
    std::fputs("\r\x1b[2K", stderr);  // erase the line, as tqdm(leave=False) does
  }
  move_up(options_.position);
  std::fflush(stderr);
}

void ProgressBar::update(int64_t n) {
  done_ += n;
  if (enabled_) draw();
}

void ProgressBar::draw() {
  constexpr int kWidth = 30;
  const double fraction = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  const int filled = static_cast<int>(fraction * kWidth);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(done_) / seconds : 0.0;
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(kWidth, ' ');
  const std::string prefix = options_.desc.empty() ? "" : options_.desc + ": ";
  move_down(options_.position);
  std::fprintf(stderr, "\r%s%3d%%|%s| %lld/%lld [%.1fs, %.2fit/s]", prefix.c_str(), static_cast<int>(fraction * 100),
               bar.c_str(), static_cast<long long>(done_), static_cast<long long>(total_), seconds, rate);
  move_up(options_.position);
  std::fflush(stderr);
}

}  // namespace nd
