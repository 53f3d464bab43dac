// Injects one fault at a chosen I/O: the Nth completed write, read or flush
// (counted from 0 across all three) reports -EIO, a short write, or a failed
// flush. The data of a write reported as failed may or may not have reached
// the device, as on real hardware.
#pragma once

#include <atomic>
#include <cstdint>

#include "io/io_observer.h"

namespace pcimirror {

class FaultyDevice final : public IoObserver {
 public:
  enum class Fault {
    kNone,
    kEio,         ///< the I/O fails with EIO (a flush too)
    kShortWrite,  ///< a write reports half its bytes (512-aligned); reads/flushes unaffected
  };

  /// Arms `fault` at I/O number `index`; -1 disarms.
  void arm(int64_t index, Fault fault) {
    target_ = index;
    fault_ = fault;
    count_ = 0;
    fired_ = false;
  }
  /// I/Os seen since arm().
  int64_t count() const { return count_; }
  bool fired() const { return fired_; }

  int64_t on_write(uint64_t, const std::byte*, uint64_t length_bytes,
                   int64_t result) override;
  int64_t on_read(uint64_t, uint64_t, int64_t result) override;
  int on_flush(int result) override;

 private:
  bool hit() {
    bool h = count_.fetch_add(1) == target_;
    if (h) fired_ = true;
    return h;
  }
  std::atomic<int64_t> target_{-1};
  std::atomic<int64_t> count_{0};
  std::atomic<bool> fired_{false};
  Fault fault_ = Fault::kNone;
};

}  // namespace pcimirror
