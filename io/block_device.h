// A raw block device (or a regular file standing in for one) opened for
// O_DIRECT I/O. Geometry comes from BLKGETSIZE64/BLKSSZGET (see
// ioctl_list(2), include/uapi/linux/fs.h); a regular file reports st_size and
// a logical block size of 4096.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "io/io_observer.h"
#include "io/result.h"
#include "io/unique_fd.h"

namespace pcimirror {

class BlockDevice {
 public:
  struct OpenOptions {
    bool read_only = false;
    /// O_EXCL (block devices) plus flock(LOCK_EX) on the whole device, the
    /// systemd block-device locking convention. Fails with EBUSY when the
    /// device is mounted or held by another pcimirror.
    bool exclusive = true;
    /// O_DIRECT. Off only for tools that read metadata through the cache.
    bool direct = true;
  };

  /// Opens `path`. Errors: ENOENT, EACCES, EBUSY (held exclusively
  /// elsewhere), ENOTBLK (neither a block device nor a regular file),
  /// EINVAL (a size that is not a multiple of the logical block size).
  static Result<BlockDevice> open(const std::string& path, OpenOptions opts);

  BlockDevice(BlockDevice&&) = default;
  BlockDevice& operator=(BlockDevice&&) = default;

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  /// False after close().
  bool is_open() const { return fd_.get() >= 0; }
  /// Closes the descriptor (giving up the exclusive lock), so a device that
  /// failed can be reconnected or replaced (an NBD device refuses a new
  /// connection while anyone holds it open: "nbd0 already in use"). I/O
  /// fails with EBADF until the owner opens it again.
  void close() { fd_.reset(); }
  bool is_block_device() const { return is_blockdev_; }
  bool read_only() const { return read_only_; }
  /// Usable size in bytes, rounded down to the logical block size.
  uint64_t size_bytes() const { return size_bytes_; }
  /// Logical block size in bytes (512 or 4096 in practice).
  uint32_t logical_block_size() const { return logical_block_size_; }
  /// Alignment in bytes that O_DIRECT requires of memory buffers. We use the
  /// logical block size, which every kernel accepts.
  uint32_t memory_alignment() const { return logical_block_size_; }

  /// Checks one request before submission: offset and length multiples of
  /// the logical block size, non-empty, inside the device, and (if `buffer`
  /// is given) the buffer aligned to memory_alignment(). EINVAL otherwise.
  Status check_io(uint64_t offset_bytes, uint64_t length_bytes,
                  const void* buffer) const;

  /// Synchronous positional I/O of whole aligned requests; retries short
  /// transfers and EINTR. Errors keep the syscall's errno.
  Status pread_all(void* buffer, uint64_t length_bytes,
                   uint64_t offset_bytes) const;
  Status pwrite_all(const void* buffer, uint64_t length_bytes,
                    uint64_t offset_bytes) const;
  /// fdatasync(2): makes completed writes durable (issues a cache flush).
  Status flush() const;

  /// Test hook: every completed write, read and flush of this device, here
  /// and in the io_uring engine, goes through `observer` (nullptr: none).
  /// The observer must outlive its use.
  void set_observer(IoObserver* observer) { observer_ = observer; }
  IoObserver* observer() const { return observer_; }

 private:
  BlockDevice() = default;
  std::string path_;
  UniqueFd fd_;
  bool is_blockdev_ = false;
  bool read_only_ = false;
  uint64_t size_bytes_ = 0;
  uint32_t logical_block_size_ = 4096;
  IoObserver* observer_ = nullptr;
};

/// An aligned, zero-filled heap buffer for O_DIRECT I/O (metadata, tests).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  /// `length_bytes` is rounded up to `alignment`. Throws std::bad_alloc.
  AlignedBuffer(size_t length_bytes, size_t alignment);
  AlignedBuffer(AlignedBuffer&& o) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace pcimirror
