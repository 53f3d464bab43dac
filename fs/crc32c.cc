#include "fs/crc32c.h"

#include <isa-l/crc.h>

#include <algorithm>
#include <climits>

namespace pcimirror {
namespace {

// The Castagnoli polynomial, bit-reflected: bit 31 holds x^0, bit 0 x^31.
constexpr uint32_t kReflectedPoly = 0x82F63B78u;
constexpr uint32_t kOne = 0x80000000u;  // x^0

// a * b modulo the polynomial, both in reflected order.
uint32_t multiply_mod(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int i = 0; i < 32 && a; ++i) {
    if (a & kOne) product ^= b;
    a <<= 1;                                           // next coefficient of a
    b = (b & 1) ? (b >> 1) ^ kReflectedPoly : b >> 1;  // b *= x
  }
  return product;
}

// x^bits modulo the polynomial, by square and multiply.
uint32_t x_pow_mod(uint64_t bits) {
  uint32_t result = kOne, square = kOne >> 1;  // x^1
  for (; bits; bits >>= 1) {
    if (bits & 1) result = multiply_mod(result, square);
    square = multiply_mod(square, square);
  }
  return result;
}

}  // namespace

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

uint32_t crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t length2_bytes) {
  return multiply_mod(x_pow_mod(length2_bytes * 8), crc1) ^ crc2;
}

uint32_t crc32c_of_chunks(std::span<const uint32_t> chunk_crcs,
                          uint32_t chunk_bytes, uint64_t total_bytes) {
  const uint32_t full_shift = x_pow_mod(uint64_t{chunk_bytes} * 8);
  uint32_t crc = 0;
  uint64_t left = total_bytes;
  for (uint32_t c : chunk_crcs) {
    const uint64_t n = std::min<uint64_t>(left, chunk_bytes);
    crc =
        multiply_mod(n == chunk_bytes ? full_shift : x_pow_mod(n * 8), crc) ^ c;
    left -= n;
  }
  return crc;
}

}  // namespace pcimirror
