// Crafted version-3 table headers (FORMAT.md §4) are refused as damaged
// metadata, never accepted with a wrong canary or unknown flags. (Written
// by the adversarial review of issue 13.)
#include <gtest/gtest.h>

#include <functional>

#include "fs/crc32c.h"
#include "fs/format.h"

namespace pcimirror {
namespace {

Superblock sb3() {
  auto sb = plan_layout(64ull << 20, 512, 1 << 20);
  Superblock s = *sb;
  s.uuid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  s.region_bytes = 16 << 20;
  return s;
}
SliceTable table3(const Superblock& sb) {
  SliceTable t;
  t.generation = 3;
  t.next_slice_id = 2;
  SliceEntry a;
  a.id = 1;
  a.name = "a";
  a.offset_bytes = 0;
  a.length_bytes = 4096;
  a.copies.resize(2);
  a.copies[0].extents = {{sb.data_start_sector, 8}};
  a.copies[1].extents = {{sb.data_start_sector + 8, 8}};
  t.slices.push_back(a);
  CanaryRecord c;
  c.offset_bytes = 8 << 20;
  c.nonce.fill(0x11);
  t.canary = c;
  return t;
}
// Applies `edit` to the table header (payload bytes [0, 64)), fixes CRCs.
Result<SliceTable> decode_edited(
    const std::function<void(std::vector<uint8_t>&, size_t)>& edit) {
  Superblock sb = sb3();
  auto bytes = *encode_slot(sb, table3(sb));
  edit(bytes, 64);
  uint64_t payload = 0;
  for (int b = 0; b < 8; ++b) payload |= uint64_t{bytes[24 + b]} << (8 * b);
  auto put32 = [&](size_t at, uint32_t v) {
    for (int b = 0; b < 4; ++b) bytes[at + b] = uint8_t(v >> (8 * b));
  };
  put32(36, crc32c(bytes.data() + 64, payload));
  put32(60, crc32c(bytes.data(), 60));
  return decode_slot(sb, bytes);
}
void put64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = uint8_t(v >> (8 * i));
}

TEST(SlotHeader, CraftedTableHeadersAreRefused) {
  EXPECT_TRUE(decode_edited([](auto&, size_t) {}).ok());
  struct Case {
    const char* what;
    std::function<void(std::vector<uint8_t>&, size_t)> edit;
  } cases[] = {
      {"canary_bytes 32", [](auto& b, size_t p) { b[p + 16] = 32; }},
      {"canary_bytes 0x40000040", [](auto& b, size_t p) { b[p + 19] = 0x40; }},
      {"unknown flag bit 2", [](auto& b, size_t p) { b[p + 20] = 4; }},
      {"unknown flag bit 31", [](auto& b, size_t p) { b[p + 23] = 0x80; }},
      {"reserved tail", [](auto& b, size_t p) { b[p + 63] = 1; }},
      {"canary over slice a", [](auto& b, size_t p) { put64(b, p + 8, 0); }},
      {"canary unaligned",
       [](auto& b, size_t p) { put64(b, p + 8, (8 << 20) + 4); }},
      {"canary at region end",
       [](auto& b, size_t p) { put64(b, p + 8, (16 << 20) - 32); }},
      {"canary offset 2^64-8",
       [](auto& b, size_t p) { put64(b, p + 8, ~uint64_t{7}); }},
      {"no canary but offset", [](auto& b, size_t p) { b[p + 16] = 0; }},
      {"next_slice_id 1 (ID 1 in use)",
       [](auto& b, size_t p) { put64(b, p, 1); }},
  };
  for (const Case& c : cases) {
    auto r = decode_edited(c.edit);
    EXPECT_FALSE(r.ok()) << c.what << " was accepted";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, EUCLEAN) << c.what;
    }
  }
  // The shutdown record's flags and counters survive.
  auto flags = decode_edited([](auto& b, size_t p) {
    b[p + 20] = 3;
    put64(b, p + 40, 7);
    put64(b, p + 48, 1234);
  });
  ASSERT_TRUE(flags.ok()) << flags.error().what();
  EXPECT_TRUE(flags->mounted);
  EXPECT_TRUE(flags->last_shutdown_dirty);
  EXPECT_EQ(flags->dirty_shutdowns, 7u);
  EXPECT_EQ(flags->last_dirty_shutdown_ns, 1234);
  // A nonce without a canary ("zeros without one") is dropped, harmlessly.
  auto r = decode_edited([](auto& b, size_t p) {
    b[p + 16] = 0;
    put64(b, p + 8, 0);
  });
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().what());
  if (r.ok()) {
    EXPECT_FALSE(r->canary);
  }
}

}  // namespace
}  // namespace pcimirror
