// Helpers for unit tests: temporary sparse files and emulated regions.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fs/format.h"

namespace pcimirror::testing {

/// The ID of slice `name` in `table`, or 0 (no slice has it: the engine
/// answers ENOENT). Tests name slices; the engine addresses them by ID.
inline uint64_t slice_id(const SliceTable& table, const std::string& name) {
  const SliceEntry* e = table.find_name(name);
  return e ? e->id : 0;
}
/// The device byte holding byte `slice_offset` of mirror copy `c` (its
/// extents in order, FORMAT.md §4.1).
inline uint64_t device_byte(const MirrorCopy& c, uint64_t slice_offset) {
  for (const Extent& x : c.extents) {
    if (slice_offset < x.sectors * 512)
      return x.start_sector * 512 + slice_offset;
    slice_offset -= x.sectors * 512;
  }
  std::abort();
}
/// slice_id() of each name, in order.
inline std::vector<uint64_t> slice_ids(const SliceTable& table,
                                       const std::vector<std::string>& names) {
  std::vector<uint64_t> out;
  for (const std::string& n : names) out.push_back(slice_id(table, n));
  return out;
}

/// A sparse file of `bytes` under $TMPDIR (default /tmp), removed on
/// destruction. Stands in for a block device (Ceph's KernelDevice tests do
/// the same).
class TempFile {
 public:
  explicit TempFile(uint64_t bytes, const std::string& dir = "") {
    std::string d = dir.empty() ? (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp") : dir;
    path_ = d + "/pcimirror-test.XXXXXX";
    int fd = ::mkstemp(path_.data());
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) std::abort();
    ::close(fd);
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Deterministic pseudo-random bytes.
inline void fill_random(void* dst, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto* p = static_cast<unsigned char*>(dst);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<unsigned char>(rng());
}

/// Reads `n` bytes at `offset` from a file, buffered.
inline std::vector<uint8_t> read_file(const std::string& path, uint64_t offset,
                                      size_t n) {
  std::vector<uint8_t> out(n);
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, out.data() + done, n - done,
                        static_cast<off_t>(offset + done));
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

/// Overwrites bytes of a file (to inject damage).
inline void write_file(const std::string& path, uint64_t offset,
                       const void* data, size_t n) {
  int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0 || ::pwrite(fd, data, n, static_cast<off_t>(offset)) !=
                    static_cast<ssize_t>(n))
    std::abort();
  ::fsync(fd);
  ::close(fd);
}

}  // namespace pcimirror::testing
