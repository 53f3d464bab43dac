// The mirror engine: writes slices from device memory to their extents and
// back, following the commit protocol of docs/FORMAT.md §7. Plain C++ that
// tests drive without a mount; the FUSE layer calls it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "fs/format.h"
#include "fs/memory_guard.h"
#include "fs/volume.h"
#include "io/mutex.h"
#include "io/result.h"
#include "io/thread_annotations.h"
#include "io/uring_engine.h"
#include "pcimap/region.h"

namespace pcimirror {

/// How a slice's bytes reach the disk.
enum class BounceMode {
  kAuto,    ///< the measured rule: the registered bounce pool (docs/DESIGN.md)
  kAlways,  ///< always through the registered bounce pool
  kNever,   ///< zero-copy from region memory; EINVAL if its pages cannot be pinned
};
Result<BounceMode> parse_bounce_mode(const std::string& text);
const char* to_string(BounceMode m);

/// How restore verifies before writing device memory.
enum class RestoreVerify {
  kPrepass,  ///< read and verify the whole copy, then read it again to copy
  kInline,   ///< one pass: each CRC chunk is verified before it is copied
  /// inline when the memory guard knows the memory was reset since the
  /// last mirror (its canary does not match: there is nothing in it to
  /// keep), prepass otherwise (docs/DESIGN.md, "Restore verification").
  kAuto,
};
Result<RestoreVerify> parse_restore_verify(const std::string& text);

struct MirrorOptions {
  EngineOptions engine;
  BounceMode bounce = BounceMode::kAuto;
  /// prepass: nothing reaches memory before the whole copy verifies.
  /// inline: half the reads; a damaged chunk stops the restore part-way
  /// (the chunks verified so far are written, in any order, and reported)
  /// and falls back. auto (default): inline into memory whose canary says
  /// it was reset, prepass otherwise.
  RestoreVerify restore_verify = RestoreVerify::kAuto;
  /// Accept a PCI device other than the one recorded at format, or a
  /// smaller BAR (mount option ignore_device_id).
  bool ignore_device_id = false;
};

/// Checks that `region` is the memory the volume was formatted for: the same
/// PCI vendor and device ID and a BAR at least as large as at format.
/// Emulated regions (file=, memfd=) are always accepted, so a BAR's mirrors
/// can be restored into a file. EINVAL naming both devices and the override.
Status check_region_identity(const Superblock& sb, const Region& region,
                             bool ignore_device_id);

/// Write-behind of one slice (docs/DESIGN.md, "Write-behind"): CRC chunks
/// (crc_chunk_bytes of the slice, docs/FORMAT.md §5) already written, not
/// yet flushed or committed, into the copy that the slice's next sync
/// commits. The caller owns it (the FUSE layer keeps one per slice) and
/// passes it to write_behind() and then to sync(); it is stale, and ignored,
/// once anything else commits a mirror of the slice.
struct WriteBehind {
  uint64_t slice_id = 0;     ///< the slice it belongs to (SliceEntry::id)
  uint32_t target_copy = 0;  ///< index into SliceEntry::copies
  uint64_t generation = 0;   ///< generation the copy will carry; 0: not started
  /// Volume::device_epoch() when it started: after the mirror device was
  /// released and reopened, chunks written before are not trusted.
  uint64_t device_epoch = 0;
  std::vector<uint32_t> chunk_crc32c;  ///< per chunk; valid where written
  std::vector<uint8_t> written;        ///< 1: chunk k is on the device
  uint64_t bounced_bytes = 0, direct_bytes = 0;  ///< how chunks were written
  bool active() const { return generation != 0; }
  /// True when this write-behind belongs to the next sync of `e`.
  bool matches(const SliceEntry& e, uint32_t crc_chunk_bytes) const;
  /// Bytes of the slice (length `length_bytes`) that are written.
  uint64_t written_bytes(uint64_t length_bytes, uint32_t crc_chunk_bytes) const;
};

/// What one sync did.
struct SyncReport {
  uint64_t slice_id = 0;
  std::string slice;  ///< the slice's name at the sync (a label, for logs)
  uint64_t generation = 0;  ///< the slice's new mirror generation
  uint64_t bytes = 0;
  uint64_t behind_bytes = 0;  ///< of `bytes`, written ahead by write-behind
  uint64_t duration_ns = 0;  ///< data write + flush, excluding the commit
  MirrorPath path = MirrorPath::kNone;
  uint32_t crc32c = 0;
  double mb_per_s() const {
    return duration_ns ? static_cast<double>(bytes) * 1e3 / duration_ns : 0.0;
  }
};

/// Where and why one copy of a slice failed to read or to verify: damage
/// to that copy (docs/DESIGN.md, "Restore verification").
struct CopyDamage {
  uint32_t copy = 0;        ///< index into SliceEntry::copies
  uint64_t generation = 0;  ///< the copy's generation
  /// Positive errno: the device's (EIO, ...) when `unreadable`, EUCLEAN for
  /// a CRC mismatch, else the failed operation's.
  int code = 0;
  /// A read request failed on the device (a medium error): the bytes below
  /// could not be read.
  bool unreadable = false;
  /// The bytes of the slice affected, from its start: the failed read or
  /// the bad CRC chunk; the whole slice for a whole-CRC mismatch; length 0
  /// when unknown (the read failed otherwise, e.g. a failed io_uring_enter).
  uint64_t slice_offset_bytes = 0, length_bytes = 0;
  /// The same bytes on the mirror device; empty when unknown.
  std::vector<DeviceExtent> device;
  std::string message;  ///< the error, as Error::what() gives it
  /// True when the copy's own bytes or CRCs are at fault (a device read
  /// error or a CRC mismatch), not the machinery reading them.
  bool is_damage() const { return unreadable || code == EUCLEAN; }
  /// The errno's symbolic name ("EIO", "EUCLEAN"), or "errno" if unknown.
  const char* errno_name() const;
  /// "is unreadable", "is damaged" (EUCLEAN) or "failed".
  const char* state() const;
  /// What failed where: "mirror device bytes [x, y) fail to read with EIO
  /// (...); slice bytes [a, b)", or the CRC mismatch and its bytes.
  std::string detail() const;
  /// "copy 1 (generation 4) " + state() + ": " + detail(), for messages.
  std::string describe() const;
};

/// A range of device memory (the region) that a restore overwrote, and the
/// copy whose verified bytes it holds.
struct RestoredRange {
  uint64_t offset_bytes = 0;  ///< in the region, as SliceEntry::offset_bytes
  uint64_t length_bytes = 0;
  uint32_t copy = 0;  ///< index into SliceEntry::copies
  uint64_t generation = 0;
};

/// What one restore did. A failed restore fills it too (see restore()).
struct RestoreReport {
  uint64_t slice_id = 0;
  std::string slice;
  uint64_t generation = 0;  ///< of the copy restored
  uint64_t bytes = 0;
  uint64_t duration_ns = 0;
  bool skipped = false;     ///< never mirrored: nothing to restore
  /// The first copy was verified chunk by chunk as it was copied
  /// (restore_verify=inline, or auto into memory that was reset).
  bool verified_inline = false;
  /// The current copy was damaged; restored an older generation (the
  /// newest intact one, `generation`).
  bool fell_back = false;
  std::string note;         ///< why it fell back: the copy, errno and range
  /// Each copy that failed to read or verify, in the order tried.
  std::vector<CopyDamage> damage;
  /// Device memory written, in region order: the whole slice on success;
  /// after a failure, what was written before it (empty: untouched).
  std::vector<RestoredRange> written;
};

/// The committed generations of `e`, newest first: "5 (current), 4, 3", or
/// "none (never mirrored)". For messages (docs/FORMAT.md §7).
std::string describe_generations(const SliceEntry& e);

/// "[a, b) from copy 0 (generation 5), ..." in region bytes, or "nothing".
std::string describe_written(const std::vector<RestoredRange>& written);

/// Reads copy `copy` of slice `e` through `engine` and checks every chunk
/// CRC32C and the whole CRC32C (docs/FORMAT.md §5). EUCLEAN naming the
/// first bad chunk and its bytes; the read's errno (EIO, ...) on I/O
/// failure, naming the device bytes. On error, `damage`, when given, says
/// where (its `copy` is left for the caller). Touches no region. Not
/// thread-safe (the engine is not).
Status verify_mirror(UringEngine& engine, const Superblock& sb,
                     const SliceEntry& e, const MirrorCopy& copy,
                     const std::function<void(uint64_t)>& progress = {},
                     CopyDamage* damage = nullptr);

class MirrorEngine {
 public:
  /// Checks the region against the volume (size, PCI identity) and the bounce
  /// mode against the region, and sets up the io_uring engine. Errors:
  /// EINVAL (bounce=never on a non-pinnable region, region too small for the
  /// slices), ENOMEM (RLIMIT_MEMLOCK), ENOSYS (no io_uring).
  static Result<std::unique_ptr<MirrorEngine>> create(Volume& volume,
                                                      Region& region,
                                                      MirrorOptions options);
  ~MirrorEngine();

  /// Every method below addresses a slice by its stable ID
  /// (SliceEntry::id, docs/FORMAT.md §4.1), never by name: a rename between
  /// a caller's lookup and the call cannot redirect it to another slice.
  /// ENOENT for an ID that is not in the table (a slice removed meanwhile).
  /// slice_id_of() (fs/slice_table.h) turns a name into an ID.
  ///
  /// Mirrors slice `slice_id` into its non-current copy, flushes, commits and
  /// flushes (§7). Thread-safe: mirror operations are serialised. The caller
  /// keeps the slice's memory stable meanwhile (the FUSE layer holds the
  /// slice's write lock). ENOENT for an unknown slice; the failing I/O's
  /// errno otherwise, with nothing committed. `amend`, when given, updates
  /// the slice's entry (times, mode) in the table that the sync commits.
  /// `progress`, when given, is called with the bytes handed to the device
  /// so far (for the .progress xattr and progress bars).
  /// `behind`, when given and still matching the slice, names chunks that
  /// write_behind() has written already: only the other chunks are written.
  Result<SyncReport> sync(uint64_t slice_id,
                          const std::function<void(SliceEntry&)>& amend = {},
                          const std::function<void(uint64_t)>& progress = {},
                          const WriteBehind* behind = nullptr) EXCLUDES(mu_);

  /// Write-behind: writes CRC chunks [first_chunk, first_chunk + count) of
  /// slice `slice_id` from region memory into the copy its next sync commits,
  /// with neither flush nor commit, so the committed mirror is untouched and
  /// a crash loses nothing (docs/FORMAT.md §7). Starts `behind` if it is not
  /// active. ESTALE when `behind` belongs to an older state of the slice
  /// (the caller resets it), EOPNOTSUPP with one mirror copy (it would
  /// overwrite the only mirror), ENOENT, EROFS, EINVAL for chunks past the
  /// end; the write's errno otherwise. On every error the chunks asked for
  /// are marked unwritten in `behind`, so the next sync writes them.
  Status write_behind(uint64_t slice_id, uint64_t first_chunk, uint64_t count,
                      WriteBehind& behind) EXCLUDES(mu_);

  /// Mirrors several slices with one pipelined write, one flush and one
  /// metadata commit (group commit). All or nothing: on error nothing is
  /// committed. Each slice's sync time is its share of the batch, by size.
  /// `behind`, when given, holds one write-behind (or nullptr) per ID, as
  /// for sync(). Reports come in device order.
  Result<std::vector<SyncReport>> sync_batch(
      const std::vector<uint64_t>& slice_ids,
      const std::function<void(SliceEntry&)>& amend = {},
      std::span<const WriteBehind* const> behind = {}) EXCLUDES(mu_);

  /// Adds slice `entry` (name, window, mode, owner, times) with a new ID
  /// (the report's slice_id) and fresh extents; with `mirror_now` also
  /// writes its first mirror, all in one commit. Errors as add_slice_to(),
  /// or the mirror's I/O errno.
  Result<SyncReport> add_slice(SliceEntry entry, bool mirror_now) EXCLUDES(mu_);
  /// Removes slice `slice_id` in one commit; device memory is untouched.
  Status remove_slice(uint64_t slice_id) EXCLUDES(mu_);
  /// Renames slice `slice_id` to `to` in one commit; EEXIST when another
  /// slice has that name (never replaces one).
  Status rename_slice(uint64_t slice_id, const std::string& to) EXCLUDES(mu_);

  /// Reads the committed mirror of `slice_id`, verifies every chunk CRC32C and
  /// the whole CRC32C, and only then copies it into the region (§5); with
  /// restore_verify=inline, or auto when the region's canary does not match
  /// (the memory was reset), each chunk is verified just before it is
  /// copied (RestoreReport::verified_inline says which).
  /// A copy that cannot be read (any read errno, EIO in practice) or fails
  /// a CRC is damaged: the older generations that are written are tried
  /// next, newest first, each verified whole before it is restored
  /// (docs/FORMAT.md §8), and the report says which generation was used
  /// (fell_back, note, damage, generation). Only damage falls back
  /// (CopyDamage::is_damage()).
  /// `generation` non-zero restores exactly that generation of the slice
  /// (restore --generation), verified whole first whatever restore_verify
  /// says, with no fallback: ENOENT when no written copy of the slice holds
  /// it, the copy's errno when it is damaged, each naming the slice and its
  /// committed generations, with device memory untouched.
  /// Errors: ENOENT (unknown slice); when no copy restores, the first
  /// copy's errno (EUCLEAN, EIO, ...) with a message naming the slice, each
  /// copy's failure and the device memory written. Device memory is
  /// untouched then in prepass mode unless a copy pass itself failed after
  /// its copy verified; inline leaves the chunks verified before the
  /// damage was found (RestoreReport::written lists them). `failed`, when
  /// given, gets the report of a failed restore (damage and written ranges).
  /// `progress` gets bytes done of 2 x length (verify pass, then copy).
  /// Thread-safe (serialised with mirrors).
  Result<RestoreReport> restore(
      uint64_t slice_id, const std::function<void(uint64_t)>& progress = {},
      RestoreReport* failed = nullptr, uint64_t generation = 0) EXCLUDES(mu_);

  /// Prefaults every slice's window of the region for reading
  /// (Region::prefault_for_read: MADV_POPULATE_READ on plain memory), so
  /// the first mirror after a mount copies as fast as the next ones. Called
  /// by mount; add_slice() prefaults a new slice's window itself. Best
  /// effort; returns the bytes covered. Thread-safe.
  uint64_t prefault_windows() EXCLUDES(mu_);

  /// Reads and verifies the committed mirror of `slice_id` without touching
  /// the region. EUCLEAN on a mismatch.
  Status verify(uint64_t slice_id) EXCLUDES(mu_);

  /// The current table (a copy, consistent under the engine's lock).
  SliceTable table() const EXCLUDES(mu_);

  /// The memory guard (fs/memory_guard.h, docs/DESIGN.md "Never mirror
  /// garbage"). Every mirror (sync, sync_batch, add_slice with a mirror)
  /// runs its check before writing and again after the flush, before the
  /// commit: a failed check is EIO with nothing committed. restore() checks
  /// the device before and after. These report the state for status and
  /// xattrs; thread-safe, without the engine's lock.
  MemoryState memory_state() const { return guard_.state(); }
  std::string memory_message() const { return guard_.message(); }
  std::string canary_state() const { return guard_.canary_state(); }
  /// Runs the guard's check now (at mount, and for status): EIO when the
  /// device is lost or the memory was reset. Thread-safe, and does not wait
  /// for a mirror in flight (it compares with the committed canary kept
  /// aside, not the engine's table).
  Status check_memory(const std::string& what) EXCLUDES(mu_, canary_mu_);
  /// Declares the memory as it is now the truth (restore finished, or
  /// `sync --accept-memory`): writes a new random nonce into the canary,
  /// commits it, and sets the state ok. Without a canary, only clears the
  /// state. EIO when the device does not answer or the write does not read
  /// back; the commit's errno. On error the state stays as it was.
  /// Thread-safe (serialised with mirrors).
  Status renew_canary(const std::string& why) EXCLUDES(mu_);
  /// Claims 64 bytes at `offset_bytes` of the region as the canary
  /// (docs/FORMAT.md §4.2, §6 rule 8; `pcimirror canary`): writes a new
  /// nonce there and commits it; a canary elsewhere moves. EINVAL
  /// (unaligned, outside the region, over a slice), EBUSY while the memory
  /// is `memory-reset` (restore or accept first), EIO (device lost), or the
  /// commit's errno. Thread-safe.
  Status set_canary(uint64_t offset_bytes) EXCLUDES(mu_);
  /// MemoryGuard::set_observer; call before other threads use the engine.
  void set_memory_observer(
      std::function<void(MemoryState, MemoryState, const std::string&)> f) {
    guard_.set_observer(std::move(f));
  }
  const Superblock& superblock() const { return volume_.superblock(); }
  Region& region() { return region_; }
  const MirrorOptions& options() const { return options_; }

  /// Applies `edit` to a copy of the table and commits it (metadata-only
  /// changes such as chmod).
  Status commit_edit(const std::function<Status(SliceTable&)>& edit)
      EXCLUDES(mu_);

 private:
  MirrorEngine(Volume& volume, Region& region, MirrorOptions options,
               std::unique_ptr<UringEngine> engine);
  // One copy to write: slice `entry` into `target` as `generation`.
  struct CopyRequest {
    const SliceEntry* entry;
    const MirrorCopy* target;
    uint64_t generation;
    std::function<void(uint64_t)> progress;
    const WriteBehind* behind = nullptr;  // chunks written already
  };
  // One run of chunks [first_chunk, end_chunk) of a request to write.
  struct Run {
    size_t request;
    uint64_t first_chunk, end_chunk;
  };
  struct RunResult {
    std::vector<uint32_t> chunk_crc32c;
    uint64_t bounced_bytes = 0, direct_bytes = 0;
  };
  // Writes the runs as one pipeline, without flushing. The engine's errno on
  // failure.
  Result<std::vector<RunResult>> write_runs(std::span<const CopyRequest> reqs,
                                            std::span<const Run> runs)
      REQUIRES(mu_);
  // Writes each request's memory into its target copy as one pipeline, then
  // flushes once (§7 steps 1-2); returns the copies filled in (CRCs, times,
  // path) and a report each.
  Result<std::vector<MirrorCopy>> write_copies(
      std::span<const CopyRequest> reqs, std::vector<SyncReport>& reports)
      REQUIRES(mu_);
  // Reads copy `c` once, verifying each CRC chunk on a copy worker before
  // copying it into the region; `written` gets one flag per chunk written
  // (chunks are written in any order), `restored` the bytes written so far
  // (called from the workers, one call at a time). EUCLEAN at a bad chunk
  // (the lowest one found), the read's errno at an unreadable one; what
  // verified before it is written; `damage` says where.
  Status copy_verified(const SliceEntry& e, const MirrorCopy& c,
                       std::vector<uint8_t>& written,
                       const std::function<void(uint64_t)>& restored,
                       CopyDamage* damage) REQUIRES(mu_);

  // The guard's check with the committed canary; EIO when it fails.
  Status check_memory_locked(const std::string& what) REQUIRES(mu_);
  Volume& volume_;
  Region& region_;
  MirrorOptions options_;
  MemoryGuard guard_;  // thread-safe on its own
  // The committed canary, for check_memory() without mu_: set at create and
  // by renew_canary()/set_canary() after their commit (under mu_). A leaf.
  mutable Mutex canary_mu_;
  std::optional<CanaryRecord> canary_ GUARDED_BY(canary_mu_);
  std::unique_ptr<UringEngine> engine_ PT_GUARDED_BY(mu_);
  // Serialises engine use (the io_uring engine is not thread-safe) and the
  // volume's table and commits. Everything but write-behind locks it through
  // lock_ahead_of_write_behind(), which write-behind lets go first.
  // Returns mu_ locked, for the caller's scope. The analysis cannot follow
  // a lock returned in a std::unique_lock: it takes mu_ as held from the
  // call on (ASSERT_CAPABILITY), and the function body is not checked.
  // Callers keep the lock to the end of their scope.
  std::unique_lock<Mutex> lock_ahead_of_write_behind() const
      ASSERT_CAPABILITY(mu_) NO_THREAD_SAFETY_ANALYSIS;
  mutable Mutex mu_;
  mutable std::atomic<int> waiting_{0};
};

}  // namespace pcimirror
