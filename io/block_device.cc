#include "io/block_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace pcimirror {

Result<BlockDevice> BlockDevice::open(const std::string& path,
                                      OpenOptions opts) {
  BlockDevice dev;
  dev.path_ = path;
  dev.read_only_ = opts.read_only;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return errno_error("cannot open device " + path);
  dev.is_blockdev_ = S_ISBLK(st.st_mode);
  if (!dev.is_blockdev_ && !S_ISREG(st.st_mode))
    return make_error(ENOTBLK, path + " is neither a block device nor a "
                                      "regular file; give a partition such "
                                      "as /dev/sdb2 or an image file");
  int flags = (opts.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (opts.direct) flags |= O_DIRECT;
  if (opts.exclusive && dev.is_blockdev_) flags |= O_EXCL;
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) {
    if (errno == EBUSY)
      return make_error(EBUSY, "device " + path +
                                   " is busy: it is mounted or held by "
                                   "another program; unmount it first");
    return errno_error("cannot open device " + path);
  }
  dev.fd_.reset(fd);
  if (opts.exclusive) {
    // udev takes LOCK_SH briefly while probing; retry for up to a second.
    int tries = 0;
    while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK || ++tries > 20)
        return make_error(EBUSY, "device " + path +
                                     " is locked by another program (is it "
                                     "mounted by pcimirror?); unmount it first");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  if (dev.is_blockdev_) {
    uint64_t bytes = 0;
    int lbs = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0)
      return errno_error("BLKGETSIZE64 failed on " + path);
    if (::ioctl(fd, BLKSSZGET, &lbs) != 0)
      return errno_error("BLKSSZGET failed on " + path);
    dev.size_bytes_ = bytes;
    dev.logical_block_size_ = static_cast<uint32_t>(lbs);
  } else {
    dev.size_bytes_ = static_cast<uint64_t>(st.st_size);
    dev.logical_block_size_ = 4096;
  }
  if (dev.logical_block_size_ < 512 || dev.logical_block_size_ > 4096 ||
      (dev.logical_block_size_ & (dev.logical_block_size_ - 1)))
    return make_error(EINVAL, "device " + path +
                                  " reports an unsupported logical block size "
                                  "of " +
                                  std::to_string(dev.logical_block_size_));
  dev.size_bytes_ -= dev.size_bytes_ % dev.logical_block_size_;
  return dev;
}

Status BlockDevice::check_io(uint64_t offset_bytes, uint64_t length_bytes,
                             const void* buffer) const {
  const uint64_t lbs = logical_block_size_;
  if (length_bytes == 0 || offset_bytes % lbs || length_bytes % lbs)
    return make_error(EINVAL, "unaligned I/O on " + path_ + " at byte " +
                                  std::to_string(offset_bytes) + " length " +
                                  std::to_string(length_bytes));
  if (offset_bytes > size_bytes_ || length_bytes > size_bytes_ - offset_bytes)
    return make_error(EINVAL, "I/O beyond the end of " + path_ + " at byte " +
                                  std::to_string(offset_bytes));
  if (buffer && reinterpret_cast<uintptr_t>(buffer) % memory_alignment())
    return make_error(EINVAL, "unaligned buffer for O_DIRECT I/O on " + path_);
  return {};
}

Status BlockDevice::pread_all(void* buffer, uint64_t length_bytes,
                              uint64_t offset_bytes) const {
  PCIM_TRY(check_io(offset_bytes, length_bytes, buffer));
  auto* p = static_cast<std::byte*>(buffer);
  while (length_bytes > 0) {
    ssize_t n = ::pread(fd(), p, length_bytes, static_cast<off_t>(offset_bytes));
    if (observer_) {
      n = static_cast<ssize_t>(observer_->on_read(
          offset_bytes, length_bytes, n < 0 ? -errno : n));
      if (n < 0) errno = static_cast<int>(-n);  // the observer's -errno
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read from " + path_ + " failed");
    if (n == 0) return make_error(EIO, "unexpected end of " + path_);
    p += n;
    length_bytes -= static_cast<uint64_t>(n);
    offset_bytes += static_cast<uint64_t>(n);
  }
  return {};
}

Status BlockDevice::pwrite_all(const void* buffer, uint64_t length_bytes,
                               uint64_t offset_bytes) const {
  PCIM_TRY(check_io(offset_bytes, length_bytes, buffer));
  auto* p = static_cast<const std::byte*>(buffer);
  while (length_bytes > 0) {
    ssize_t n =
        ::pwrite(fd(), p, length_bytes, static_cast<off_t>(offset_bytes));
    if (observer_) {
      n = static_cast<ssize_t>(observer_->on_write(
          offset_bytes, p, length_bytes, n < 0 ? -errno : n));
      if (n < 0) errno = static_cast<int>(-n);  // the observer's -errno
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("write to " + path_ + " failed");
    if (n == 0) return make_error(EIO, "write to " + path_ + " made no progress");
    p += n;
    length_bytes -= static_cast<uint64_t>(n);
    offset_bytes += static_cast<uint64_t>(n);
  }
  return {};
}

Status BlockDevice::flush() const {
  int r = ::fdatasync(fd()) != 0 ? -errno : 0;
  if (observer_) r = observer_->on_flush(r);
  if (r != 0) return sys_error(r, "flush of " + path_ + " failed");
  return {};
}

AlignedBuffer::AlignedBuffer(size_t length_bytes, size_t alignment) {
  size_ = (length_bytes + alignment - 1) / alignment * alignment;
  void* p = nullptr;
  if (size_ == 0 || ::posix_memalign(&p, alignment, size_) != 0)
    throw std::bad_alloc();
  std::memset(p, 0, size_);
  data_ = static_cast<std::byte*>(p);
}
AlignedBuffer::AlignedBuffer(AlignedBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}
AlignedBuffer::~AlignedBuffer() { std::free(data_); }

}  // namespace pcimirror
