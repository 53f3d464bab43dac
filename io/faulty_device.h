// Injects one fault at a chosen I/O: the Nth completed write, read or flush
// (counted from 0 across all three) reports -EIO, a short write, or a failed
// flush. The data of a write reported as failed may or may not have reached
// the device, as on real hardware. Separately, arm_enter() fails the Nth
// io_uring_enter(2) of the io_uring engine (a failed submit or wait). And
// add_unreadable() makes a byte range of the device unreadable, as a disk
// with a bad sector: every read overlapping it fails with EIO, every time.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

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

  /// Fails io_uring_enter number `index` (counted from 0 since this call)
  /// with `error` (a positive errno, e.g. EAGAIN or EIO); with `sticky`,
  /// every enter from `index` on fails. -1 disarms.
  void arm_enter(int64_t index, int error, bool sticky = false) {
    enter_target_ = index;
    enter_error_ = error;
    enter_sticky_ = sticky;
    enter_count_ = 0;
    enter_fired_ = false;
  }
  /// io_uring_enter calls seen since arm_enter().
  int64_t enter_count() const { return enter_count_; }
  bool enter_fired() const { return enter_fired_; }

  /// Makes device bytes [offset_bytes, offset_bytes + length_bytes)
  /// unreadable: every read overlapping them (in the io_uring engine or
  /// BlockDevice::pread_all) fails with EIO, as a medium error fails a whole
  /// request, until clear_unreadable(). Independent of arm(); writes are
  /// unaffected. Thread-safe.
  void add_unreadable(uint64_t offset_bytes, uint64_t length_bytes) {
    std::lock_guard lock(mu_);
    unreadable_.emplace_back(offset_bytes, offset_bytes + length_bytes);
  }
  void clear_unreadable() {
    std::lock_guard lock(mu_);
    unreadable_.clear();
  }
  /// Reads failed by add_unreadable() ranges so far.
  int64_t unreadable_hits() const { return unreadable_hits_; }

  int64_t on_write(uint64_t, const std::byte*, uint64_t length_bytes,
                   int64_t result) override;
  int64_t on_read(uint64_t, uint64_t, int64_t result) override;
  int on_flush(int result) override;
  int on_enter() override;

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
  std::atomic<int64_t> enter_target_{-1};
  std::atomic<int64_t> enter_count_{0};
  std::atomic<int> enter_error_{0};
  std::atomic<bool> enter_sticky_{false};
  std::atomic<bool> enter_fired_{false};
  mutable std::mutex mu_;
  std::vector<std::pair<uint64_t, uint64_t>> unreadable_;  // [begin, end)
  std::atomic<int64_t> unreadable_hits_{0};
};

}  // namespace pcimirror
