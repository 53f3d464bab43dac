// The filesystem engine behind the mount: one regular file per slice in a
// flat root directory. Every method returns -errno style results and never
// throws, so FUSE handlers (fs/fuse_ops.cc) stay thin adapters and tests
// drive this class without a mount.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "fs/mirror.h"
#include "io/result.h"

namespace pcimirror {

constexpr uint64_t kRootIno = 1;
/// st_blksize of slice files: cp(1) sizes its buffer from it.
constexpr uint32_t kPreferredIoBytes = 1u << 20;

struct SliceFsOptions {
  bool read_only = false;
  /// Owner and mode shown for every slice file instead of the recorded ones
  /// (mount options uid=, gid=, umask=: mode = 0666 & ~umask). While any is
  /// set, chmod and chown fail with EPERM.
  std::optional<uint32_t> uid, gid, umask;
};

class SliceFs {
 public:
  /// `engine` must outlive this object.
  SliceFs(MirrorEngine& engine, SliceFsOptions options);

  /// Inode of slice `name`, or -ENOENT.
  Result<uint64_t> lookup(const std::string& name) const;
  /// Attributes of the root (kRootIno) or a slice. -ENOENT.
  Result<struct stat> getattr(uint64_t ino) const;
  /// Slice names in inode order.
  std::vector<std::pair<std::string, uint64_t>> list() const;

  /// Checks access for open(2) flags. -ENOENT, -EROFS for write access on a
  /// read-only mount, -EISDIR for the root.
  Status open(uint64_t ino, int flags) const;
  /// Copies up to `size` bytes at `offset_bytes` of slice `ino` into `dst`;
  /// returns bytes copied, 0 at or past the end. -ENOENT.
  Result<size_t> read(uint64_t ino, uint64_t offset_bytes, size_t size,
                      std::byte* dst) const;
  /// Copies `size` bytes into the slice at `offset_bytes`; returns the bytes
  /// that fit. -ENOSPC when offset_bytes is at or past the end (so a write
  /// past the end gets ENOSPC after the bytes that fit), -EROFS, -ENOENT.
  Result<size_t> write(uint64_t ino, uint64_t offset_bytes, size_t size,
                       const std::byte* src);
  /// Mirrors the slice now (fsync, `pcimirror sync`) and returns when the
  /// mirror is committed. -EIO on any I/O failure (details are logged).
  Status sync(uint64_t ino);
  /// Mirrors the slice if it was written since its last mirror (close
  /// after a write).
  Status sync_if_dirty(uint64_t ino);
  /// Mirrors every dirty slice (unmount).
  void sync_all_dirty();
  /// Handles setattr: a size equal to or below the slice length is accepted
  /// and ignored (O_TRUNC leaves the size unchanged), a larger one is
  /// -EFBIG; mode/uid/gid/times update the metadata.
  Result<struct stat> setattr(uint64_t ino, const struct stat& attr,
                              int to_set_mask);
  struct Space {
    uint64_t total_bytes, free_bytes, block_bytes, files;
  };
  Space statfs() const;

  /// Bits for setattr's to_set_mask, matching FUSE_SET_ATTR_*.
  enum : int { kSetMode = 1, kSetUid = 2, kSetGid = 4, kSetSize = 8,
               kSetAtime = 16, kSetMtime = 32, kSetAtimeNow = 128,
               kSetMtimeNow = 256 };

 private:
  struct Slice {
    SliceEntry entry;  // name, window, mode, times (metadata snapshot)
    mutable std::shared_mutex content;   // writes: shared; sync: exclusive
    std::atomic<uint64_t> write_seq{0};  // bumped by every write
    std::atomic<uint64_t> synced_seq{0}; // write_seq at the last mirror
  };
  Slice* get(uint64_t ino) const;
  Status sync_slice(Slice& s);

  MirrorEngine& engine_;
  SliceFsOptions options_;
  std::vector<std::unique_ptr<Slice>> slices_;  // ino = index + 2
  mutable std::shared_mutex meta_mu_;           // guards entry fields
};

}  // namespace pcimirror
