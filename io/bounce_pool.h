// A bounded pool of aligned, pre-faulted anonymous buffers used as bounce
// buffers between device memory and O_DIRECT I/O. The engine registers the
// whole pool once with io_uring (io_uring_register_buffers(3)) so each
// request can use IORING_OP_WRITE_FIXED/READ_FIXED. Memory stays at
// count x buffer_bytes whatever the slice size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "io/result.h"
#include "io/unique_fd.h"

namespace pcimirror {

class BouncePool {
 public:
  /// Allocates `count` buffers of `buffer_bytes` each (a multiple of 4096),
  /// the pool 2 MiB-aligned, asked for transparent huge pages
  /// (madvise(2) MADV_HUGEPAGE, best effort) and pre-faulted
  /// (MADV_POPULATE_WRITE), so the first copy does not pay for fresh pages
  /// and the device sees physically contiguous buffers where THP allows.
  /// Errors: EINVAL for zero sizes, ENOMEM.
  static Result<BouncePool> create(unsigned count, size_t buffer_bytes);

  BouncePool(BouncePool&&) = default;
  BouncePool& operator=(BouncePool&&) = default;

  unsigned count() const { return count_; }
  size_t buffer_bytes() const { return buffer_bytes_; }
  size_t total_bytes() const { return mapping_.size_bytes(); }
  /// Start of buffer `index` (0 <= index < count()).
  std::byte* buffer(unsigned index) const {
    return mapping_.data() + size_t{index} * buffer_bytes_;
  }
  /// Takes a free buffer index; -1 when all are in use.
  int acquire();
  /// Returns buffer `index` to the pool.
  void release(unsigned index) { free_.push_back(index); }
  unsigned free_count() const { return static_cast<unsigned>(free_.size()); }

 private:
  BouncePool() = default;
  Mapping mapping_;
  unsigned count_ = 0;
  size_t buffer_bytes_ = 0;
  std::vector<unsigned> free_;
};

}  // namespace pcimirror
