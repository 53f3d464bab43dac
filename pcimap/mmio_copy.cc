#include "pcimap/mmio_copy.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace pcimirror {
namespace {

// One naturally aligned access of sizeof(T) bytes between MMIO and memory.
template <typename T, bool kToMmio>
void move_one(volatile uint8_t* mmio, uint8_t* mem) {
  T v;
  if (kToMmio) {
    std::memcpy(&v, mem, sizeof v);
    *reinterpret_cast<volatile T*>(mmio) = v;
  } else {
    v = *reinterpret_cast<volatile T*>(mmio);
    std::memcpy(mem, &v, sizeof v);
  }
}

// Moves the unaligned head (until `mmio` is 16-byte aligned) or a short tail
// with the widest naturally aligned accesses that fit.
template <bool kToMmio>
size_t small_copy(volatile uint8_t* mmio, uint8_t* mem, size_t n) {
  size_t done = 0;
  while (done < n) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(mmio + done);
    const size_t left = n - done;
    if (a % 8 == 0 && left >= 8) {
      move_one<uint64_t, kToMmio>(mmio + done, mem + done);
      done += 8;
    } else if (a % 4 == 0 && left >= 4) {
      move_one<uint32_t, kToMmio>(mmio + done, mem + done);
      done += 4;
    } else if (a % 2 == 0 && left >= 2) {
      move_one<uint16_t, kToMmio>(mmio + done, mem + done);
      done += 2;
    } else {
      move_one<uint8_t, kToMmio>(mmio + done, mem + done);
      done += 1;
    }
  }
  return done;
}

size_t head_bytes(const volatile void* p, size_t n) {
  size_t mis = reinterpret_cast<uintptr_t>(p) % 16;
  return mis ? std::min(n, 16 - mis) : 0;
}

__attribute__((target("sse4.1"))) void stream_load_copy(uint8_t* dst,
                                                        const uint8_t* src,
                                                        size_t n) {
  // n is a multiple of 16 and src is 16-byte aligned.
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    auto* s = reinterpret_cast<__m128i*>(const_cast<uint8_t*>(src + i));
    __m128i a = _mm_stream_load_si128(s);
    __m128i b = _mm_stream_load_si128(s + 1);
    __m128i c = _mm_stream_load_si128(s + 2);
    __m128i d = _mm_stream_load_si128(s + 3);
    auto* o = reinterpret_cast<__m128i*>(dst + i);
    _mm_storeu_si128(o, a);
    _mm_storeu_si128(o + 1, b);
    _mm_storeu_si128(o + 2, c);
    _mm_storeu_si128(o + 3, d);
  }
  for (; i < n; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm_stream_load_si128(reinterpret_cast<__m128i*>(
                         const_cast<uint8_t*>(src + i))));
}

void sse2_load_copy(uint8_t* dst, const uint8_t* src, size_t n) {
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    auto* s = reinterpret_cast<const __m128i*>(src + i);
    __m128i a = _mm_load_si128(s);
    __m128i b = _mm_load_si128(s + 1);
    __m128i c = _mm_load_si128(s + 2);
    __m128i d = _mm_load_si128(s + 3);
    auto* o = reinterpret_cast<__m128i*>(dst + i);
    _mm_storeu_si128(o, a);
    _mm_storeu_si128(o + 1, b);
    _mm_storeu_si128(o + 2, c);
    _mm_storeu_si128(o + 3, d);
  }
  for (; i < n; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm_load_si128(reinterpret_cast<const __m128i*>(src + i)));
}

const bool kHaveSse41 = __builtin_cpu_supports("sse4.1");

}  // namespace

void mmio_copy_from(void* dst, const volatile void* src, size_t n,
                    bool write_combining) {
  auto* d = static_cast<uint8_t*>(dst);
  auto* s = const_cast<uint8_t*>(static_cast<const volatile uint8_t*>(src));
  size_t h = head_bytes(s, n);
  small_copy<false>(s, d, h);
  size_t body = (n - h) / 16 * 16;
  if (write_combining && kHaveSse41)
    stream_load_copy(d + h, s + h, body);
  else
    sse2_load_copy(d + h, s + h, body);
  small_copy<false>(s + h + body, d + h + body, n - h - body);
}

void mmio_copy_to(volatile void* dst, const void* src, size_t n) {
  auto* d = const_cast<uint8_t*>(static_cast<volatile uint8_t*>(dst));
  auto* s = const_cast<uint8_t*>(static_cast<const uint8_t*>(src));
  size_t h = head_bytes(d, n);
  small_copy<true>(d, s, h);
  size_t body = (n - h) / 16 * 16;
  size_t i = h;
  for (; i + 64 <= h + body; i += 64) {
    auto* in = reinterpret_cast<const __m128i*>(s + i);
    __m128i a = _mm_loadu_si128(in);
    __m128i b = _mm_loadu_si128(in + 1);
    __m128i c = _mm_loadu_si128(in + 2);
    __m128i e = _mm_loadu_si128(in + 3);
    auto* o = reinterpret_cast<__m128i*>(d + i);
    _mm_stream_si128(o, a);
    _mm_stream_si128(o + 1, b);
    _mm_stream_si128(o + 2, c);
    _mm_stream_si128(o + 3, e);
  }
  for (; i < h + body; i += 16)
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
  small_copy<true>(d + h + body, s + h + body, n - h - body);
  _mm_sfence();
}

}  // namespace pcimirror
