// The memory guard: before and after every mirror, is the memory still the
// board's? A mirror of a device that vanished, of a device with memory
// decoding off, or of memory that was reset since pcimirror last knew it
// would turn good mirrors into garbage (docs/DESIGN.md, "Never mirror
// garbage"). The guard answers with two checks:
//  - device liveness (Region::check_device(): PCI IDs and COMMAND through
//    config space) -> state `device-lost`, cleared as soon as the device
//    answers again;
//  - the canary (docs/FORMAT.md §4.2): 64 bytes of the region that hold
//    encode_canary() of the committed record -> state `memory-reset` on a
//    mismatch, which stays until restore or accept writes and commits a new
//    nonce (MirrorEngine::renew_canary).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "fs/format.h"
#include "io/mutex.h"
#include "io/result.h"
#include "io/thread_annotations.h"
#include "pcimap/region.h"

namespace pcimirror {

/// What the guard knows about the region's memory.
enum class MemoryState : uint8_t {
  kOk = 0,           ///< the device answers and the canary (if any) matches
  kDeviceLost = 1,   ///< the device does not answer or decodes no memory
  kMemoryReset = 2,  ///< the canary does not match: reset, reload, power cycle
};
/// "ok", "device-lost", "memory-reset": the words of status and xattrs.
const char* to_string(MemoryState s);

/// A canary record at `offset_bytes` with a new random nonce (getrandom(2)).
/// The errno of getrandom on failure.
Result<CanaryRecord> fresh_canary(uint64_t offset_bytes);

class MemoryGuard {
 public:
  /// `sb` and `region` must outlive the guard.
  MemoryGuard(const Superblock& sb, Region& region);

  /// The check before and after a mirror: the device first, then the
  /// canary `canary` (nullptr: the volume has none). `what` says when, for
  /// the message ("before the mirror of slice 'a'"). Updates the state and
  /// logs each transition. EIO, naming the region and `what`, saying that
  /// nothing was committed and what to do, when the state is not ok
  /// afterwards; memory-reset is sticky (a canary that matches again does
  /// not clear it, only reset_to_ok()). Thread-safe.
  Status check(const CanaryRecord* canary, const std::string& what)
      EXCLUDES(mu_);
  /// The device check alone (restore, which may run on reset memory). EIO
  /// as check(). Thread-safe.
  Status check_device(const std::string& what) EXCLUDES(mu_);
  /// True when the region holds the canary `c`. Reads 64 bytes of the
  /// region; changes no state. Errors: EINVAL when the region (a smaller
  /// one given by --memory or ignore_device_id) does not reach the canary,
  /// which says nothing about the memory; the region's copy error (a DMA
  /// region's EIO, ...), named as the canary's read. Thread-safe.
  Result<bool> canary_matches(const CanaryRecord& c) const;
  /// Writes canary `c` into the region and reads it back. EIO when the
  /// read-back differs (the device dropped the write). Callers commit the
  /// record afterwards. Thread-safe.
  Status write_canary(const CanaryRecord& c);
  /// After a restore or an accept committed a new canary: state ok, logged
  /// with `why`. Thread-safe.
  void reset_to_ok(const std::string& why) EXCLUDES(mu_);

  /// Called after each change of state, and after every reset_to_ok() (a
  /// new canary, even from ok to ok), with the old and new state and the
  /// reason, under the guard's lock (keep it short: an event, a log line).
  /// Set before the guard is shared between threads.
  void set_observer(
      std::function<void(MemoryState, MemoryState, const std::string&)> f) {
    observer_ = std::move(f);
  }

  MemoryState state() const { return state_.load(std::memory_order_acquire); }
  /// Why the state is not ok (empty when it is).
  std::string message() const EXCLUDES(mu_);
  /// "none" (no canary), "unchecked" (not read yet), "ok" or "mismatch",
  /// as of the last check.
  std::string canary_state() const EXCLUDES(mu_);

 private:
  // Sets the state and message, logging a change. Returns EIO with `msg`
  // when `to` is not ok.
  Status transition(MemoryState to, const std::string& msg) REQUIRES(mu_);
  const Superblock& sb_;
  Region& region_;
  mutable Mutex mu_;  // serialises checks and guards the fields below
  std::string message_ GUARDED_BY(mu_);
  std::string canary_state_ GUARDED_BY(mu_) = "unchecked";
  // memory-reset seen before the device was lost: restored once it answers.
  bool reset_pending_ GUARDED_BY(mu_) = false;
  std::string reset_message_ GUARDED_BY(mu_);
  std::function<void(MemoryState, MemoryState, const std::string&)> observer_;
  // Written under mu_; read without it by state() (status, xattrs).
  std::atomic<MemoryState> state_{MemoryState::kOk};
};

}  // namespace pcimirror
