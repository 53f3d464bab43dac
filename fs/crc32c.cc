#include "fs/crc32c.h"

#include <isa-l/crc.h>

#include <climits>

namespace pcimirror {

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t length_bytes) {
  // crc32_iscsi neither pre- nor post-inverts and takes an int length.
  uint32_t state = ~crc;
  auto* p = static_cast<unsigned char*>(const_cast<void*>(data));
  while (length_bytes > 0) {
    size_t n = length_bytes > (1u << 30) ? (1u << 30) : length_bytes;
    state = crc32_iscsi(p, static_cast<int>(n), state);
    p += n;
    length_bytes -= n;
  }
  return ~state;
}

}  // namespace pcimirror
