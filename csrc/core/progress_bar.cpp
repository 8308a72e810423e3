#include "core/progress_bar.h"

#include <cstdio>

namespace nd {

ProgressBar::ProgressBar(int64_t total, bool enabled, std::string description)
    : total_(total), enabled_(enabled && total > 0), description_(std::move(description)),
      start_(std::chrono::steady_clock::now()) {
  if (enabled_) draw();
}

ProgressBar::~ProgressBar() {
  if (enabled_) std::fputc('\n', stderr);  // keep the last drawn state, end its line
}

void ProgressBar::update(int64_t n) {
  done_ += n;
  if (enabled_) draw();
}

void ProgressBar::draw() {
  constexpr int kWidth = 30;
  const double fraction = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  const int filled = static_cast<int>(fraction * kWidth);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(done_) / seconds : 0.0;
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(kWidth, ' ');
  std::fprintf(stderr, "\r%s%3d%%|%s| %lld/%lld [%.1fs, %.2fit/s]", description_.c_str(),
               static_cast<int>(fraction * 100), bar.c_str(), static_cast<long long>(done_),
               static_cast<long long>(total_), seconds, rate);
  std::fflush(stderr);
}

}  // namespace nd
