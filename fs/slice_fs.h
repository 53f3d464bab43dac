// The filesystem engine behind the mount: one regular file per slice in a
// flat root directory. Every method returns Result/Status with an errno and
// never throws, so FUSE handlers (fs/fuse_ops.cc) stay thin adapters and
// tests drive this class without a mount.
//
// The namespace is fixed: the root lists exactly the declared slices, each
// at its window (its identity: the board reads its memory there). Nothing
// through the mount creates, moves or deletes a slice; the FUSE layer
// refuses create, mknod, mkdir, symlink, link, unlink and rename with EPERM.
// Slices change only through `pcimirror slice add|rm|rename`, which on a
// mounted volume calls add_slice(), remove_slice() and rename_slice() here
// (through the root's control xattrs, fs/fuse_ops.cc): each is one metadata
// commit (docs/FORMAT.md §7).
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "fs/events.h"
#include "fs/mirror.h"
#include "fs/writer_priority_mutex.h"
#include "io/mutex.h"
#include "io/result.h"
#include "io/thread_annotations.h"

namespace pcimirror {

constexpr uint64_t kRootIno = 1;
/// st_blksize of slice files: cp(1) sizes its buffer from it.
constexpr uint32_t kPreferredIoBytes = 1u << 20;
/// Extended attributes of slice files (getfattr -d -m pcimirror FILE).
constexpr const char* kXattrNames[] = {
    "user.pcimirror.generation", "user.pcimirror.last_sync",
    "user.pcimirror.path",       "user.pcimirror.state",
    "user.pcimirror.crc32c",     "user.pcimirror.progress"};

/// Extended attributes of the root directory: the memory guard's state
/// ("ok", "device-lost", "memory-reset") and why, the canary's state
/// ("none", "unchecked", "ok", "mismatch") and offset, and the last failed
/// mirror's message ("" once that slice mirrors again), and the protection
/// state as one JSON object (set_protection(); {"state": "no UPS", ...}
/// without ups=). Read by `pcimirror status MOUNTPOINT`; not listed, so
/// cp -a and rsync -a copy nothing.
constexpr const char* kRootXattrNames[] = {
    "user.pcimirror.memory_state",    "user.pcimirror.memory_message",
    "user.pcimirror.canary",          "user.pcimirror.canary_offset",
    "user.pcimirror.last_sync_error", "user.pcimirror.protection"};

/// What closing a file that was written does.
enum class MirrorOnClose {
  kSync,   ///< mirror before close returns (default: cp is durable)
  kAsync,  ///< queue a mirror and return at once
  kOff,    ///< nothing; fsync, `pcimirror sync`, interval= or unmount mirror
};
Result<MirrorOnClose> parse_mirror_on_close(const std::string& text);

struct SliceFsOptions {
  bool read_only = false;
  /// Owner and mode shown for every slice file instead of the recorded ones
  /// (mount options uid=, gid=, umask=: mode = 0666 & ~umask). While any is
  /// set, chmod and chown fail with EPERM.
  std::optional<uint32_t> uid, gid, umask;
  MirrorOnClose mirror_on_close = MirrorOnClose::kSync;
  /// Mirror periodically (0: never). Every slice counts as changed, since
  /// the device writes its memory unseen, unless host_only_writes.
  uint64_t interval_ms = 0;
  bool host_only_writes = false;
  /// Where state changes go (sync failed/recovered; fs/events.h). May be
  /// null; must outlive the SliceFs.
  EventLog* events = nullptr;
  /// Write-behind (docs/DESIGN.md): with mirror_on_close sync or async, each
  /// CRC chunk of a slice that a write through the mount completes is
  /// written into the slice's next mirror copy while the writer goes on;
  /// the mirror at close writes only the chunks still missing, then flushes
  /// and commits. Needs two or more mirror copies (format --copies).
  bool write_behind = true;
};

class SliceFs {
 public:
  /// `engine` must outlive this object.
  SliceFs(MirrorEngine& engine, SliceFsOptions options);
  ~SliceFs();
  SliceFs(const SliceFs&) = delete;
  SliceFs& operator=(const SliceFs&) = delete;

  /// True when every slice was mirrored after its last write and no mirror
  /// failed: what a clean unmount needs (docs/FORMAT.md §4 `mounted`).
  bool all_clean() const EXCLUDES(tree_mu_);

  /// Starts the worker for mirror_on_close=async and interval= (if either is
  /// set) and the write-behind thread (if on); stop_background() ends them.
  /// The destructor stops them too.
  void start_background();
  void stop_background();

  Result<uint64_t> lookup(const std::string& name) const EXCLUDES(tree_mu_);
  Result<struct stat> getattr(uint64_t ino) const;
  std::vector<std::pair<std::string, uint64_t>> list() const EXCLUDES(tree_mu_);

  /// open(2) with `flags`: ENOENT, EROFS, EISDIR. With O_TRUNC and write
  /// access, the slice reads as zeros afterwards: its device memory is
  /// zero-filled, and it counts as written (truncate_to(ino, 0)). Returns
  /// true when the open wrote device memory.
  Result<bool> open(uint64_t ino, int flags);
  /// Copies up to `size` bytes at `offset_bytes` into `dst`; 0 at the end.
  /// The region's copy error (a DMA region's EIO, ETIMEDOUT, ...) comes back
  /// as it is, for the FUSE reply.
  Result<size_t> read(uint64_t ino, uint64_t offset_bytes, size_t size,
                      std::byte* dst) const;
  /// The bytes read() would copy, as a view into region memory, so a FUSE
  /// reply copies them once. Plain memory only (a file or memfd region,
  /// Region::pages_pinnable()): EOPNOTSUPP for a BAR, which needs read()'s
  /// MMIO-aware copy, and for a DMA region, which has no mapping. Empty at
  /// or past the end; ENOENT.
  Result<std::span<const std::byte>> read_view(uint64_t ino,
                                               uint64_t offset_bytes,
                                               size_t size) const;
  /// Copies `size` bytes in at `offset_bytes`; returns the bytes that fit.
  /// ENOSPC at or past the end; ENOENT for a removed slice; the region's
  /// copy error (a DMA region's EIO, ...), after which the range counts as
  /// changed (the next mirror copies it) but not as written.
  Result<size_t> write(uint64_t ino, uint64_t offset_bytes, size_t size,
                       const std::byte* src);
  /// Mirrors the slice now and returns when committed (fsync, `pcimirror
  /// sync`). A failure keeps the engine's errno and message (ENOSPC, EIO,
  /// EROFS, ...; also logged).
  Status sync(uint64_t ino);
  /// Mirrors the named slices (all when `names` is empty) with one group
  /// commit. The root directory's
  /// `user.pcimirror.sync` xattr, set by `pcimirror sync`, calls this.
  /// ENOENT for an unknown name; a failed mirror keeps the engine's errno.
  // Not checked by the analysis: it holds the content locks of a group of
  // slices, a set of locks of run-time size that it cannot name.
  Status sync_batch(const std::vector<std::string>& names)
      NO_THREAD_SAFETY_ANALYSIS;
  /// close(2) of a descriptor: if `wrote`, mirrors per mirror_on_close. A
  /// failed mirror keeps the engine's errno.
  Status close(uint64_t ino, bool wrote);
  /// A slice whose mirror failed, with the engine's error.
  struct SyncFailure {
    std::string slice;
    Error error;
  };
  /// Mirrors every dirty slice (unmount); returns the slices whose mirror
  /// failed (each logged), empty when every one was committed.
  std::vector<SyncFailure> sync_all_dirty() EXCLUDES(tree_mu_);

  /// Online slice changes (`pcimirror slice add|rm|rename MOUNTPOINT`). Each
  /// is one crash-safe metadata commit (docs/FORMAT.md §7); the file appears
  /// or disappears at once. Changes are serialised among themselves; each
  /// waits for writes and mirrors of its slice in flight (the slice's content
  /// lock, exclusive) and holds no lock over the namespace during I/O.
  /// Errors pass through with their errno: EROFS, EINVAL (bad name, window
  /// outside the region or overlapping a slice), EEXIST, ENOENT, ENOSPC
  /// (data area full), or the commit's I/O errno.
  ///
  /// Declares slice `spec` with fresh mirror extents and no mirror yet; it
  /// counts as dirty, so the next sync, interval tick or unmount mirrors it.
  /// Device memory is untouched.
  Status add_slice(const SliceSpec& spec) EXCLUDES(control_mu_, tree_mu_);
  /// Removes slice `name` and frees its mirror's extents; device memory is
  /// untouched. Open descriptors of it get ENOENT from then on.
  Status remove_slice(const std::string& name) EXCLUDES(control_mu_, tree_mu_);
  /// Renames slice `from` to `to`; EEXIST when `to` exists (never replaces).
  Status rename_slice(const std::string& from, const std::string& to)
      EXCLUDES(control_mu_, tree_mu_);

  /// `pcimirror sync --accept-memory` and mount option accept_memory:
  /// declares the memory as it is now the truth (MirrorEngine::renew_canary:
  /// a new canary nonce, committed) and marks every slice dirty, so the
  /// next sync, interval tick or unmount mirrors it. EIO when the device
  /// does not answer; the commit's errno. Thread-safe.
  Status accept_memory(const std::string& why) EXCLUDES(control_mu_, tree_mu_);
  /// `pcimirror canary MOUNTPOINT OFFSET`: MirrorEngine::set_canary.
  Status set_canary(uint64_t offset_bytes) EXCLUDES(control_mu_);

  /// Handles setattr. A slice has a fixed size: a size `s` below its length
  /// zero-fills device memory from `s` to the slice's end (so truncate(2),
  /// ftruncate and O_TRUNC leave what a regular file would hold, followed by
  /// zeros) and counts as a write; its own length is a no-op; a larger size
  /// is EFBIG. mode/uid/gid are committed at once; times with the next
  /// mirror.
  Result<struct stat> setattr(uint64_t ino, const struct stat& attr,
                              int to_set_mask) EXCLUDES(control_mu_);

  /// Value of extended attribute `name` (kXattrNames; on the root,
  /// kRootXattrNames); ENODATA otherwise. A slice's `state` is the memory
  /// guard's state (device-lost, memory-reset) while that is not ok, else
  /// syncing, error, dirty or clean.
  Result<std::string> getxattr(uint64_t ino, const std::string& name) const;

  /// Power-fail read-only (the UPS watch, fs/ups_watch.h): while on,
  /// write(), truncation (setattr size, open with O_TRUNC) and opens for
  /// writing fail with EROFS, the first refusal after each switch logged
  /// with `why`; reads, mirrors and unmount go on. A write in flight when
  /// it is switched on finishes first: the check runs under the slice's
  /// content lock, which every mirror takes exclusively, so a mirror that
  /// starts after this call returns holds every write the mount accepted.
  /// Thread-safe.
  void set_power_fail_read_only(bool on, const std::string& why)
      EXCLUDES(protection_mu_);
  bool power_fail_read_only() const { return power_fail_ro_.load(); }
  /// Throughput of the recent mirrors (the last kRateSamples syncs, each
  /// counted with the bytes it wrote itself, not those written ahead by
  /// write-behind): their bytes over their write-and-flush time, in MB/s
  /// (10^6 bytes per second); 0 before any mirror. Thread-safe.
  double recent_mb_per_s() const EXCLUDES(rate_mu_);
  static constexpr size_t kRateSamples = 8;
  /// Bytes a save of the memory writes now, in bytes: every slice's length
  /// (the device writes its memory unseen), or with host_only_writes only
  /// the lengths of slices written since their last mirror. Thread-safe.
  uint64_t save_bytes() const EXCLUDES(tree_mu_);
  /// The last failed mirror as status shows it ("" when none is pending).
  std::string last_sync_error() const EXCLUDES(error_mu_);
  /// Sets the root xattr user.pcimirror.protection: a JSON object
  /// (fs/ups_watch.cc). Thread-safe.
  void set_protection(std::string json) EXCLUDES(protection_mu_);

  /// Bytes written by write-behind since the mount (for tests and status).
  uint64_t behind_bytes() const { return behind_bytes_.load(); }

  struct Space {
    uint64_t total_bytes, free_bytes, block_bytes, files;
  };
  Space statfs() const EXCLUDES(tree_mu_);

  /// Bits for setattr's to_set_mask, matching FUSE_SET_ATTR_*.
  enum : int { kSetMode = 1, kSetUid = 2, kSetGid = 4, kSetSize = 8,
               kSetAtime = 16, kSetMtime = 32, kSetAtimeNow = 128,
               kSetMtimeNow = 256 };

 private:
  friend struct SliceFsTestPeer;  // tests: hold a slice's locks
  struct Slice {
    uint64_t id = 0;   // stable slice ID (docs/FORMAT.md §4.1): engine calls
    uint64_t ino = 0;  // ino_of(id)
    uint64_t offset_bytes = 0;  // the window: fixed for the slice's life
    uint64_t length_bytes = 0;
    mutable SharedMutex meta;           // guards `entry`
    SliceEntry entry GUARDED_BY(meta);  // name, mode, owner, times
    // Set by remove_slice() under `content` exclusive: from then on nothing
    // reads, writes or mirrors the slice.
    std::atomic<bool> removed{false};
    // Writes: shared; mirror/commit: exclusive, ahead of new writes.
    WriterPriorityMutex content;
    std::atomic<uint64_t> write_seq{0}, synced_seq{0};
    std::atomic<bool> syncing{false}, failed{false};
    std::atomic<uint64_t> progress_bytes{0};
    // Write-behind, for committed slices when it is on. Per CRC chunk:
    // kChunkDirty once written through the mount since the chunk was last
    // mirrored, plus kChunkReady when a write reached the chunk's end.
    std::unique_ptr<std::atomic<uint8_t>[]> chunk_state;
    uint64_t chunk_count = 0;
    // Chunks written ahead; used by the write-behind thread under `content`
    // shared (it is the only such user) and by mirrors under `content`
    // exclusive.
    WriteBehind behind GUARDED_BY(content);
    // After an I/O error, until the next mirror.
    bool behind_paused GUARDED_BY(content) = false;
    std::atomic<bool> behind_queued{false};
  };
  static constexpr uint8_t kChunkDirty = 1, kChunkReady = 2;
  // A slice's inode number: its ID + 1 (the root is 1), so inode numbers
  // are stable across mounts and never reused within a volume.
  static uint64_t ino_of(uint64_t slice_id) { return slice_id + 1; }
  bool write_behind_on() const;
  // Not checked by the analysis: `s` is new, no other thread sees it yet, so
  // it sets `s.behind` without s.content.
  void init_chunks(Slice& s) const NO_THREAD_SAFETY_ANALYSIS;
  // Marks the chunks of a write; true if one is ready for write-behind.
  // `ready`: false for zero-fills, whose chunks the writer rewrites next.
  bool mark_written(Slice& s, uint64_t offset_bytes, uint64_t size,
                    bool ready = true) const REQUIRES_SHARED(s.content);
  // Zero-fills [from_bytes, length) of `s` as a write (truncation).
  Status zero_fill(Slice& s, uint64_t from_bytes) EXCLUDES(s.content, s.meta);
  std::shared_ptr<Slice> find(const std::string& name) const EXCLUDES(tree_mu_);
  // Clears every chunk's state before a mirror of `s` (content exclusive)
  // and drops chunks dirtied since write-behind wrote them.
  void settle_chunks(Slice& s) REQUIRES(s.content);
  // Not checked by the analysis: the write-behind thread sets `s.behind` and
  // `s.behind_paused` holding s.content shared, as their only user in that
  // mode (mirrors hold it exclusively), which GUARDED_BY cannot express.
  void write_behind(Slice& s) NO_THREAD_SAFETY_ANALYSIS;
  void behind_worker() EXCLUDES(behind_mu_);
  std::shared_ptr<Slice> get(uint64_t ino) const EXCLUDES(tree_mu_);
  Status sync_slice(Slice& s) EXCLUDES(s.content, s.meta);
  // Ends a mirror of `s`: clears syncing, records failure; returns `err`
  // (errno and message unchanged) when there is one.
  Status settle(Slice& s, const Error* err);
  bool dirty(const Slice& s) const;
  // EROFS (and one log line per switch) while power-fail read-only is on.
  Status refuse_power_fail(const char* what) EXCLUDES(protection_mu_);
  void record_rate(uint64_t bytes, uint64_t ns) EXCLUDES(rate_mu_);
  void enqueue(uint64_t ino) EXCLUDES(queue_mu_);
  void worker() EXCLUDES(queue_mu_);

  MirrorEngine& engine_;
  SliceFsOptions options_;
  // Serialises online slice changes; held across their commit, never by
  // reads, writes or mirrors.
  Mutex control_mu_;
  mutable SharedMutex tree_mu_;
  std::map<uint64_t, std::shared_ptr<Slice>> slices_ GUARDED_BY(tree_mu_);
  std::map<std::string, uint64_t> names_ GUARDED_BY(tree_mu_);

  std::thread worker_;
  Mutex queue_mu_;
  CondVar queue_cv_;
  std::deque<uint64_t> queue_ GUARDED_BY(queue_mu_);
  bool stopping_ GUARDED_BY(queue_mu_) = false;

  std::thread behind_thread_;
  Mutex behind_mu_;
  CondVar behind_cv_;
  std::deque<uint64_t> behind_queue_ GUARDED_BY(behind_mu_);
  bool behind_stopping_ GUARDED_BY(behind_mu_) = false;
  std::atomic<uint64_t> behind_bytes_{0};

  // The last failed mirror, for status: its message (with the time) and
  // slice; cleared when that slice mirrors again.
  mutable Mutex error_mu_;
  std::string last_sync_error_ GUARDED_BY(error_mu_);
  uint64_t last_sync_error_slice_ GUARDED_BY(error_mu_) = 0;
  // The slices whose last mirror failed: each sends sync-failed as it
  // enters, and sync-recovered goes out when the set is empty again.
  std::set<uint64_t> failing_slices_ GUARDED_BY(error_mu_);

  // Power-fail read-only: read without a lock by every write (under the
  // slice's content lock); `power_fail_logged_` makes the first refusal
  // after each switch log a line.
  std::atomic<bool> power_fail_ro_{false};
  std::atomic<bool> power_fail_logged_{false};
  // The recent mirrors' bytes and write-and-flush nanoseconds, newest last.
  mutable Mutex rate_mu_;
  std::deque<std::pair<uint64_t, uint64_t>> rate_samples_ GUARDED_BY(rate_mu_);
  // The protection xattr and why writes are refused.
  mutable Mutex protection_mu_;
  std::string protection_ GUARDED_BY(protection_mu_);
  std::string power_fail_why_ GUARDED_BY(protection_mu_);
};

}  // namespace pcimirror
