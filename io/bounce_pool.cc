#include "io/bounce_pool.h"

#include <sys/mman.h>

namespace pcimirror {

Result<BouncePool> BouncePool::create(unsigned count, size_t buffer_bytes) {
  if (count == 0 || buffer_bytes == 0 || buffer_bytes % 4096)
    return make_error(EINVAL,
                      "bounce pool needs at least one buffer and a buffer "
                      "size that is a multiple of 4096 bytes");
  BouncePool pool;
  size_t total = size_t{count} * buffer_bytes;
  void* p = ::mmap(nullptr, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED)
    return errno_error("cannot allocate a bounce pool of " +
                       std::to_string(total) + " bytes");
  pool.mapping_ = Mapping(p, total);
  pool.count_ = count;
  pool.buffer_bytes_ = buffer_bytes;
  pool.free_.reserve(count);
  for (unsigned i = count; i-- > 0;) pool.free_.push_back(i);
  return pool;
}

int BouncePool::acquire() {
  if (free_.empty()) return -1;
  unsigned i = free_.back();
  free_.pop_back();
  return static_cast<int>(i);
}

}  // namespace pcimirror
