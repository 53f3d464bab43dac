#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "io/units.h"

namespace pcimirror::cli {

Progress::Progress(std::string label, uint64_t total_bytes)
    : label_(std::move(label)), total_(total_bytes) {
  const char* force = std::getenv("PCIMIRROR_PROGRESS");
  active_ = ::isatty(1) || (force && std::strcmp(force, "1") == 0);
  start_ = last_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::update(uint64_t done) { draw(done, !drawn_ || done >= total_); }

void Progress::draw(uint64_t done, bool force) {
  if (!active_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
  const double frac = total_ ? static_cast<double>(done) / static_cast<double>(total_) : 1;
  const int width = 24;
  const int fill = static_cast<int>(frac * width);
  char bar[width + 1];
  for (int i = 0; i < width; ++i) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[width] = 0;
  const double eta = rate > 0 && total_ > done ? static_cast<double>(total_ - done) / rate : 0;
  std::printf("\r%-16s [%s] %3.0f%% %10s / %-10s %7.0f MB/s  ETA %2d:%02d ", label_.c_str(),
              bar, frac * 100, format_bytes(done).c_str(), format_bytes(total_).c_str(),
              rate / 1e6, static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
  std::fflush(stdout);
  drawn_ = true;
}

void Progress::finish() {
  if (!active_ || !drawn_) return;
  std::printf("\r%*s\r", 100, "");
  std::fflush(stdout);
  drawn_ = false;
}

}  // namespace pcimirror::cli
