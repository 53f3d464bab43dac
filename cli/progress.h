// A progress bar for long operations (sync, restore, fsck --verify): on a
// terminal it redraws one line with bytes, MB/s and ETA at most 10 times a
// second; elsewhere (pipes, journald) it prints nothing and the command's own
// summary line is the record.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace pcimirror::cli {

class Progress {
 public:
  /// `total_bytes` of work under `label`. Active only if stdout is a TTY
  /// (or PCIMIRROR_PROGRESS=1, for tests).
  Progress(std::string label, uint64_t total_bytes);
  ~Progress();
  void update(uint64_t done_bytes);
  void set_total(uint64_t total_bytes) { total_ = total_bytes; }
  /// Clears the bar line.
  void finish();
  bool active() const { return active_; }

 private:
  void draw(uint64_t done, bool force);
  std::string label_;
  uint64_t total_;
  bool active_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace pcimirror::cli
