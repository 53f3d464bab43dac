#include "fs/format.h"

#include <gtest/gtest.h>

#include <vector>

#include "fs/crc32c.h"

namespace pcimirror {
namespace {

Superblock sample_superblock() {
  auto sb = plan_layout(64ull << 20, 512, 1 << 20);
  EXPECT_TRUE(sb.ok());
  Superblock s = *sb;
  s.uuid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  s.label = "lab";
  s.region_bytes = 16 << 20;
  s.memory_spec = "file=/dev/shm/x,size=16M";
  s.format_time_ns = 123456789;
  return s;
}

SliceTable sample_table(const Superblock& sb) {
  SliceTable t;
  t.generation = 7;
  SliceEntry a;
  a.name = "frames";
  a.offset_bytes = 0;
  a.length_bytes = (1 << 20) + 17;
  a.mode = 0640;
  a.uid = 1000;
  a.gid = 100;
  a.copies.resize(2);
  a.copies[0].extents = {{sb.data_start_sector, 2056}};
  a.copies[1].extents = {{sb.data_start_sector + 2056, 1024},
                         {sb.data_start_sector + 4096, 1032}};
  a.copies[1].generation = 3;
  a.copies[1].crc32c = 0xdeadbeef;
  a.copies[1].path = MirrorPath::kBounce;
  a.copies[1].chunk_crc32c = {1, 2};
  a.current_copy = 1;
  t.slices.push_back(a);
  SliceEntry b;
  b.name = "x";
  b.offset_bytes = 4 << 20;
  b.length_bytes = 4096;
  b.copies.resize(1);
  b.copies[0].extents = {{sb.data_start_sector + 8192, 8}};
  t.slices.push_back(b);
  return t;
}

// Issue 12 item 8: a newline broke the newline-separated group sync list
// and invalid UTF-8 made `status --json` throw. New names must be UTF-8
// without control characters (FORMAT.md §6 rule 4a); loading stays lenient.
TEST(Names, NewNamesAreUtf8WithoutControlCharacters) {
  for (const char* good : {"frames", "a b", "caf\xc3\xa9", "\xe2\x82\xac",
                           "\xf0\x9f\x98\x80", "x.y-z_1"})
    EXPECT_TRUE(validate_new_name(good).ok()) << good;
  for (const std::string& bad :
       {std::string("a\nb"), std::string("tab\there"), std::string("del\x7f"),
        std::string("\xc3"), std::string("\xc0\xaf"),
        std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80"),
        std::string("\xff"), std::string("a/b"), std::string(".."),
        std::string()}) {
    auto r = validate_new_name(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, EINVAL);
  }
  EXPECT_TRUE(validate_name("a\nb").ok());  // older volumes still load
}

TEST(Crc32c, KnownVector) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  // Extending in pieces equals one pass.
  uint32_t c = crc32c_extend(0, "1234", 4);
  EXPECT_EQ(crc32c_extend(c, "56789", 5), 0xE3069283u);
}

TEST(Crc32c, CombineEqualsOnePass) {
  std::vector<uint8_t> data(3 << 20);
  uint64_t x = 88172645463325252ull;
  for (auto& b : data) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = static_cast<uint8_t>(x);
  }
  const uint32_t whole = crc32c(data.data(), data.size());
  for (size_t split : {size_t{0}, size_t{1}, size_t{4096}, size_t{1} << 20,
                       size_t{(1 << 20) + 17}, data.size() - 1, data.size()}) {
    const uint32_t a = crc32c(data.data(), split);
    const uint32_t b = crc32c(data.data() + split, data.size() - split);
    EXPECT_EQ(crc32c_combine(a, b, data.size() - split), whole) << split;
  }
  // Chunk by chunk, as write-behind assembles a slice's CRC.
  uint32_t acc = 0;
  for (size_t off = 0; off < data.size(); off += 1 << 20)
    acc = crc32c_combine(acc, crc32c(data.data() + off, 1 << 20), 1 << 20);
  EXPECT_EQ(acc, whole);
  // With a short last chunk.
  std::vector<uint32_t> chunks;
  const uint64_t len = data.size() - 1000;
  for (uint64_t off = 0; off < len; off += 1 << 20)
    chunks.push_back(
        crc32c(data.data() + off, std::min<uint64_t>(1 << 20, len - off)));
  EXPECT_EQ(crc32c_of_chunks(chunks, 1 << 20, len), crc32c(data.data(), len));
}

TEST(Superblock, RoundTrip) {
  Superblock sb = sample_superblock();
  auto bytes = encode_superblock(sb);
  ASSERT_EQ(bytes.size(), kSuperblockBytes);
  auto back = decode_superblock(bytes);
  ASSERT_TRUE(back.ok()) << back.error().what();
  EXPECT_EQ(*back, sb);
  EXPECT_EQ(sb.uuid_string(), "01020304-0506-0708-090a-0b0c0d0e0f10");
}

TEST(Superblock, DetectsEveryFlippedByte) {
  auto bytes = encode_superblock(sample_superblock());
  for (size_t i = 0; i < bytes.size(); i += 97) {
    auto bad = bytes;
    bad[i] ^= 0x40;
    EXPECT_FALSE(decode_superblock(bad).ok()) << "byte " << i;
  }
}

TEST(Superblock, RefusesBadLayoutEvenWithValidCrc) {
  Superblock sb = sample_superblock();
  sb.data_sectors = sb.device_bytes;  // runs off the device
  EXPECT_EQ(decode_superblock(encode_superblock(sb)).error().code, EUCLEAN);
  sb = sample_superblock();
  sb.meta_slot_sector[1] = sb.meta_slot_sector[0];  // overlapping slots
  EXPECT_EQ(decode_superblock(encode_superblock(sb)).error().code, EUCLEAN);
}

TEST(Superblock, BadMagicSaysNotAVolume) {
  std::vector<uint8_t> zeros(kSuperblockBytes, 0);
  auto r = decode_superblock(zeros);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("magic"), std::string::npos);
}

TEST(PlanLayout, TooSmallDevice) {
  EXPECT_EQ(plan_layout(8 << 20, 512, 4 << 20).error().code, ENOSPC);
  auto ok = plan_layout(16 << 20, 512, 4 << 20);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->meta_slot_sector[0], (1u << 20) / 512);
  EXPECT_EQ(ok->data_start_sector % 2048, 0u);
  EXPECT_EQ(ok->backup_superblock_sector, (16u << 20) / 512 - 8);
}

TEST(Slot, RoundTrip) {
  Superblock sb = sample_superblock();
  SliceTable t = sample_table(sb);
  auto bytes = encode_slot(sb, t);
  ASSERT_TRUE(bytes.ok()) << bytes.error().what();
  EXPECT_EQ(bytes->size() % 4096, 0u);
  auto back = decode_slot(sb, *bytes);
  ASSERT_TRUE(back.ok()) << back.error().what();
  EXPECT_EQ(back->generation, 7u);
  EXPECT_EQ(back->slices, t.slices);
}

TEST(Slot, DetectsDamageAnywhereInHeaderOrPayload) {
  Superblock sb = sample_superblock();
  auto bytes = *encode_slot(sb, sample_table(sb));
  uint64_t payload = 0;
  for (int b = 0; b < 8; ++b) payload |= uint64_t{bytes[24 + b]} << (8 * b);
  const size_t used = 64 + payload;  // every byte of header and payload
  for (size_t i = 0; i < used; i += 7) {
    auto bad = bytes;
    bad[i] ^= 0x01;
    EXPECT_FALSE(decode_slot(sb, bad).ok()) << "byte " << i;
  }
}

TEST(Slot, RefusesOtherVolume) {
  Superblock sb = sample_superblock();
  auto bytes = *encode_slot(sb, sample_table(sb));
  Superblock other = sb;
  other.uuid[0] ^= 1;
  auto r = decode_slot(other, bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("UUID"), std::string::npos);
}

TEST(Slot, TooLargeForSlotIsE2big) {
  Superblock sb = sample_superblock();
  sb.meta_slot_sectors = 32;  // 16 KiB
  SliceTable t;
  t.generation = 1;
  for (int i = 0; i < 200; ++i) {
    SliceEntry e;
    e.name = "slice-with-a-long-name-" + std::to_string(i);
    e.offset_bytes = static_cast<uint64_t>(i) * 4096;
    e.length_bytes = 4096;
    e.copies.resize(1);
    e.copies[0].extents = {{sb.data_start_sector + 8u * static_cast<unsigned>(i), 8}};
    t.slices.push_back(e);
  }
  EXPECT_EQ(encode_slot(sb, t).error().code, E2BIG);
}

class Invariants : public ::testing::Test {
 protected:
  Superblock sb = sample_superblock();
  SliceTable t = sample_table(sb);
  std::string violation() {
    auto s = validate_table(sb, t);
    return s.ok() ? "" : s.error().message;
  }
};

TEST_F(Invariants, SampleIsValid) { EXPECT_EQ(violation(), ""); }

TEST_F(Invariants, OverlappingExtents) {
  t.slices[1].copies[0].extents = {{sb.data_start_sector + 8, 8}};
  EXPECT_NE(violation().find("overlap"), std::string::npos);
}

TEST_F(Invariants, ExtentOutsideDataArea) {
  t.slices[1].copies[0].extents = {{sb.data_end_sector(), 8}};
  EXPECT_NE(violation().find("outside"), std::string::npos);
  t.slices[1].copies[0].extents = {{sb.data_start_sector - 8, 8}};
  EXPECT_NE(violation().find("outside"), std::string::npos);
}

TEST_F(Invariants, UnalignedExtent) {
  t.slices[1].copies[0].extents = {{sb.data_start_sector + 8193, 8}};
  EXPECT_NE(violation().find("unaligned"), std::string::npos);
}

TEST_F(Invariants, DuplicateName) {
  t.slices[1].name = "frames";
  EXPECT_NE(violation().find("twice"), std::string::npos);
}

TEST_F(Invariants, WindowOutsideRegion) {
  t.slices[1].offset_bytes = sb.region_bytes - 100;
  EXPECT_NE(violation().find("outside the region"), std::string::npos);
  t.slices[1].offset_bytes = UINT64_MAX - 10;  // overflow must not wrap
  EXPECT_NE(violation().find("outside the region"), std::string::npos);
}

TEST_F(Invariants, ExtentsTooShort) {
  t.slices[0].copies[0].extents = {{sb.data_start_sector, 8}};
  EXPECT_NE(violation().find("needs"), std::string::npos);
}

TEST_F(Invariants, ChunkCrcCountMustMatchLength) {
  t.slices[0].copies[1].chunk_crc32c = {1};
  EXPECT_NE(violation().find("chunk CRCs"), std::string::npos);
}

TEST_F(Invariants, BadNames) {
  for (const char* n : {"", ".", "..", "a/b"}) {
    t.slices[1].name = n;
    EXPECT_NE(violation(), "") << n;
  }
}

}  // namespace
}  // namespace pcimirror
