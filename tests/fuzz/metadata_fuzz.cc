// libFuzzer target for the metadata decoders (docs/FORMAT.md §3, §4).
// Byte 0 of the input picks the decoder; the rest is the on-disk bytes:
//   even: decode_superblock
//   odd:  decode_slot against a fixed superblock (the corpus holds slots of
//         that volume, so the UUID check passes and the payload is reached)
// Whatever decodes must encode back and decode to the same value, and the
// decoded table must pass validate_table: a decoder that accepts what the
// invariants reject would let damaged metadata through.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fs/format.h"

using namespace pcimirror;

namespace {
Superblock fixed_superblock() {
  Superblock sb = *plan_layout(64ull << 20, 512, 64 * 1024);
  for (int i = 0; i < 16; ++i) sb.uuid[i] = static_cast<uint8_t>(0xa0 + i);
  sb.region_bytes = 16 << 20;
  sb.memory_spec = "memfd=fuzz,size=16M";
  return sb;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::vector<uint8_t> bytes(data + 1, data + size);
  if ((data[0] & 1) == 0) {
    auto sb = decode_superblock(bytes);
    if (!sb.ok()) return 0;
    auto again = decode_superblock(encode_superblock(*sb));
    if (!again.ok() || !(*again == *sb)) std::abort();
    return 0;
  }
  static const Superblock sb = fixed_superblock();
  auto t = decode_slot(sb, bytes);
  if (!t.ok()) return 0;
  if (!validate_table(sb, *t).ok()) std::abort();
  auto enc = encode_slot(sb, *t);
  if (!enc.ok()) std::abort();
  auto again = decode_slot(sb, *enc);
  if (!again.ok() || again->generation != t->generation || !(again->slices == t->slices))
    std::abort();
  return 0;
}
