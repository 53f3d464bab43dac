// The emulated BAR: a file (for example on /dev/shm) or a memfd, mapped
// MAP_SHARED. Its pages are ordinary shmem/page-cache pages, so they are
// pinnable and zero-copy O_DIRECT works from them.
#pragma once

#include <memory>
#include <string>

#include "io/result.h"
#include "io/unique_fd.h"
#include "pcimap/region.h"

namespace pcimirror {

class FileRegion final : public Region {
 public:
  /// Maps `path`. If it does not exist it is created with `size_bytes`
  /// (required then). If it exists and `size_bytes` is 0 its size is used;
  /// an empty file is grown to `size_bytes`; a file of another non-zero size
  /// is refused with EINVAL. Other errors keep open/mmap's errno.
  static Result<std::unique_ptr<FileRegion>> open_file(const std::string& path,
                                                       uint64_t size_bytes);
  /// Creates an anonymous zero-filled memfd region of `size_bytes`.
  static Result<std::unique_ptr<FileRegion>> create_memfd(
      const std::string& name, uint64_t size_bytes);

  const std::string& name() const override { return name_; }
  RegionKind kind() const override { return RegionKind::kFile; }
  uint64_t size_bytes() const override { return mapping_.size_bytes(); }
  std::byte* base() const override { return mapping_.data(); }
  bool pages_pinnable() const override { return true; }
  bool write_combining() const override { return false; }
  /// madvise(2) MADV_POPULATE_WRITE (Linux 5.14) over the window's pages;
  /// ignored where the kernel lacks it.
  void prefault_for_write(uint64_t offset_bytes,
                          uint64_t length_bytes) override;
  /// madvise(2) MADV_POPULATE_READ (Linux 5.14) over the window's pages;
  /// ignored where the kernel lacks it.
  void prefault_for_read(uint64_t offset_bytes, uint64_t length_bytes) override;

 private:
  static Result<std::unique_ptr<FileRegion>> map(UniqueFd fd, std::string name,
                                                 uint64_t size_bytes);
  std::string name_;
  UniqueFd fd_;
  Mapping mapping_;
};

}  // namespace pcimirror
