// Checking and repairing a volume: what `pcimirror fsck` runs, and what the
// crash tests run on every crash state. docs/FORMAT.md §8 lists the damage
// it knows. It repairs only when asked.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fs/mirror.h"
#include "io/block_device.h"
#include "io/result.h"

namespace pcimirror {

struct FsckFinding {
  enum Severity { kInfo, kWarning, kError };
  Severity severity = kInfo;
  std::string message;
  bool repaired = false;
  /// For a damaged mirror copy (--verify): the slice, and which copy failed
  /// how and where (errno, slice and device bytes).
  std::string slice;
  std::optional<CopyDamage> damage;
};

struct FsckOptions {
  bool verify = false;  ///< read every mirror and check its CRC32Cs
  bool repair = false;  ///< fix what can be fixed (needs a writable device)
  EngineOptions engine;
  /// Called with (bytes verified so far, total) during --verify.
  std::function<void(uint64_t, uint64_t)> progress;
};

struct FsckReport {
  std::vector<FsckFinding> findings;
  uint64_t generation = 0;
  size_t slices = 0;
  uint64_t verified_bytes = 0;

  /// fsck(8) exit code: 0 clean, 1 errors corrected, 4 errors left
  /// uncorrected. (8, operational error, is the caller's for a failed run.)
  int exit_code() const;
  /// True when any error was left uncorrected.
  bool has_errors() const { return exit_code() == 4; }
};

/// Checks the volume on `device`: both superblocks, both metadata slots,
/// the invariants of §6, and with `verify` every written copy of every
/// slice, any number of copies (format --copies). A copy that the device
/// fails to read (EIO, ...) or that fails a CRC is damaged; every damaged
/// copy is reported (an error, or information for the copy the next sync
/// writes when it fails its CRC, as an interrupted sync leaves it) and the
/// run goes on to the other copies and slices. With `repair`: rewrites a
/// damaged superblock from the good one, rewrites a stale or damaged
/// metadata slot (by committing the current table again), makes the newest
/// intact older copy current when the current copy is damaged, and marks
/// damaged older copies unwritten (generation 0) when some copy of the
/// slice is intact; a later sync rewrites a copy so marked. The copy
/// repairs are one metadata commit (docs/FORMAT.md §8). Errors of the run
/// itself (not a pcimirror volume, metadata I/O failure, a failure of the
/// io_uring engine that is not a device read error): EINVAL, the errno.
Result<FsckReport> run_fsck(BlockDevice device, const FsckOptions& options);

}  // namespace pcimirror
