// CRC32C (Castagnoli) through ISA-L's crc32_iscsi; see docs/FORMAT.md §1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace pcimirror {

/// Extends a running CRC32C. Start with `crc = 0`; the result of each call
/// is the finished CRC of all bytes so far (pre/post inversion handled).
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t length_bytes);

/// CRC32C of one buffer: crc32c("123456789") == 0xE3069283.
inline uint32_t crc32c(const void* data, size_t length_bytes) {
  return crc32c_extend(0, data, length_bytes);
}

/// The CRC32C of A followed by B, from crc32c(A), crc32c(B) and B's length,
/// without the data: crc1 times x^(8 * length2_bytes) modulo the Castagnoli
/// polynomial, plus crc2 (the method of zlib's crc32_combine, Mark Adler).
/// Lets write-behind assemble a slice's whole CRC from its chunk CRCs.
uint32_t crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t length2_bytes);

/// The CRC32C of `total_bytes` of data from the CRC32Cs of its consecutive
/// chunks of `chunk_bytes` (the last one may be shorter): the whole-slice
/// CRC of docs/FORMAT.md §5 from its chunk CRCs, with no second pass over
/// the data. Expects ceil(total_bytes / chunk_bytes) chunk CRCs.
uint32_t crc32c_of_chunks(std::span<const uint32_t> chunk_crcs,
                          uint32_t chunk_bytes, uint64_t total_bytes);

}  // namespace pcimirror
