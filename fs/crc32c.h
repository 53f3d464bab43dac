// CRC32C (Castagnoli) through ISA-L's crc32_iscsi; see docs/FORMAT.md §1.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pcimirror {

/// Extends a running CRC32C. Start with `crc = 0`; the result of each call
/// is the finished CRC of all bytes so far (pre/post inversion handled).
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t length_bytes);

/// CRC32C of one buffer: crc32c("123456789") == 0xE3069283.
inline uint32_t crc32c(const void* data, size_t length_bytes) {
  return crc32c_extend(0, data, length_bytes);
}

}  // namespace pcimirror
