#include "fs/format.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
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
  t.next_slice_id = 9;  // IDs 2..6 and 8 were given to removed slices
  SliceEntry a;
  a.id = 1;
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
  b.id = 7;
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

// Issue 12 item 9: a crafted length_bytes near 2^64 wrapped the mirror size
// and the chunk count to 0, so a table naming a slice of 2^64-1 bytes with
// one 4 KiB extent and no chunk CRCs decoded as valid. A region_bytes of
// 2^64-1 (CRC-valid, crafted) lets the window check pass.
TEST(Overflow, DecodeRefusesLengthNearTwoTo64) {
  Superblock sb = sample_superblock();
  sb.region_bytes = UINT64_MAX;
  for (uint64_t len : {UINT64_MAX, UINT64_MAX - 4094, UINT64_MAX - 4095,
                       uint64_t{1} << 63, UINT64_MAX - (1u << 20) + 2}) {
    SliceTable t;
    t.generation = 1;
    t.next_slice_id = 2;
    SliceEntry e;
    e.id = 1;
    e.name = "huge";
    e.length_bytes = len;
    e.copies.resize(1);
    e.copies[0].extents = {{sb.data_start_sector, 8}};
    e.copies[0].generation = 1;  // written: chunk_crc_count must match
    t.slices.push_back(e);
    auto bytes = encode_slot(sb, t);
    ASSERT_TRUE(bytes.ok()) << bytes.error().what();
    auto r = decode_slot(sb, *bytes);
    ASSERT_FALSE(r.ok()) << "length " << len << " decoded";
    EXPECT_EQ(r.error().code, EUCLEAN) << len;
    EXPECT_NE(r.error().message.find("length_bytes " + std::to_string(len)),
              std::string::npos)
        << r.error().message;
    EXPECT_FALSE(validate_table(sb, t).ok()) << len;
  }
  // The helper itself rounds up without wrapping.
  EXPECT_EQ(chunk_count(UINT64_MAX, kCrcChunkBytes),
            UINT64_MAX / kCrcChunkBytes + 1);
}

// offset_bytes + length_bytes past 2^64 is refused, not wrapped, even when
// the (crafted) region claims 2^64-1 bytes.
TEST(Overflow, DecodeRefusesWindowThatWraps) {
  Superblock sb = sample_superblock();
  sb.region_bytes = UINT64_MAX;
  SliceTable t;
  t.generation = 1;
  t.next_slice_id = 2;
  SliceEntry e;
  e.id = 1;
  e.name = "wraps";
  e.offset_bytes = UINT64_MAX - 4095;
  e.length_bytes = 8192;
  e.copies.resize(1);
  e.copies[0].extents = {{sb.data_start_sector, 16}};
  t.slices.push_back(e);
  auto r = decode_slot(sb, *encode_slot(sb, t));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EUCLEAN);
  EXPECT_NE(r.error().message.find("outside the region"), std::string::npos);
}

// The sum of a copy's extents saturates instead of wrapping: with a
// crafted superblock of 2^63 bytes, 2048 extents of 2^53 sectors sum to
// exactly 2^64 sectors. Wrapped to 0 that read "holds 0 sectors"; the real
// fault is the overlap.
TEST(Overflow, ExtentSumDoesNotWrap) {
  Superblock sb = sample_superblock();
  sb.device_bytes = uint64_t{1} << 63;
  sb.backup_superblock_sector = sb.device_bytes / 512 - 8;
  sb.data_sectors = sb.backup_superblock_sector - sb.data_start_sector;
  sb.region_bytes = uint64_t{1} << 40;
  ASSERT_TRUE(decode_superblock(encode_superblock(sb)).ok());
  SliceTable t;
  t.generation = 1;
  t.next_slice_id = 2;
  SliceEntry e;
  e.id = 1;
  e.name = "x";
  e.length_bytes = 8 * 512;
  e.copies.resize(1);
  for (int i = 0; i < 2048; ++i)
    e.copies[0].extents.push_back({sb.data_start_sector, uint64_t{1} << 53});
  t.slices.push_back(e);
  auto s = validate_table(sb, t);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, EUCLEAN);
  EXPECT_NE(s.error().message.find("overlap"), std::string::npos)
      << s.error().message;
}

// A huge --metadata-size wrapped plan_layout: 2^64-4096 bytes per slot
// planned "successfully" with slot 1 before slot 0. It must be EINVAL
// naming --metadata-size, its value and the remedy for any slot larger than
// the device, ENOSPC when the slots fit but leave no data area, and never
// wrap.
TEST(PlanLayout, HugeMetadataSizeIsEinval) {
  for (uint64_t meta :
       {UINT64_MAX / 4096 * 4096, (UINT64_MAX / 2 + 1),
        UINT64_MAX / 2 / 4096 * 4096, (uint64_t{1} << 63) - (1u << 20),
        uint64_t{1} << 40, uint64_t{128} << 20}) {
    auto r = plan_layout(64ull << 20, 512, meta);
    ASSERT_FALSE(r.ok()) << meta;
    EXPECT_EQ(r.error().code, EINVAL) << meta;
    EXPECT_NE(r.error().message.find("--metadata-size " + std::to_string(meta)),
              std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("smaller --metadata-size"),
              std::string::npos)
        << r.error().message;
  }
  // Near the top of the 64-bit range the device itself: still no wrap.
  for (uint64_t dev : {UINT64_MAX, UINT64_MAX - 4095, UINT64_MAX / 2}) {
    auto r = plan_layout(dev, 512, UINT64_MAX / 4096 * 4096);
    ASSERT_FALSE(r.ok()) << dev;
    // EINVAL when one slot exceeds the device, else ENOSPC (no data area).
    EXPECT_TRUE(r.error().code == EINVAL || r.error().code == ENOSPC) << dev;
    auto ok = plan_layout(dev, 512, 4u << 20);
    ASSERT_TRUE(ok.ok()) << dev << ": " << ok.error().what();
    EXPECT_TRUE(decode_superblock(encode_superblock(*ok)).ok()) << dev;
  }
  // Slots ending just before a backup near 2^64: rounding the data area
  // up to 1 MiB must not wrap either.
  const uint64_t top = (UINT64_MAX / 4096 * 4096 - 4096 - (1u << 20)) / 2;
  auto r = plan_layout(UINT64_MAX, 512, top / 4096 * 4096);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOSPC) << r.error().what();
  // A size that fits the slots but leaves no data area stays ENOSPC.
  EXPECT_EQ(
      plan_layout(16ull << 20, 512, (7u << 20) + (256u << 10)).error().code,
      ENOSPC);
  EXPECT_TRUE(plan_layout(16ull << 20, 512, 4u << 20).ok());
}

// Issue 12 item 10: FORMAT.md §4.1 promised zeros up to the next allocation
// block, but on a 512-byte-sector device the engine pads the mirror image
// only to the logical block (the rest of the last allocation block keeps
// what it held). Existing volumes have that layout, so the spec now says
// so; this test keeps the spec and the code's rule together. The e2e test
// tail_padding (tests/badinput) checks the bytes on a 512-byte loop device.
TEST(FormatSpec, TailPaddingRuleMatchesTheEngine) {
  const auto doc = std::filesystem::path(__FILE__).parent_path() / ".." / ".." /
                   "docs" / "FORMAT.md";
  std::ifstream in(doc);
  ASSERT_TRUE(in) << doc;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  EXPECT_EQ(text.find("zeros up to the\nnext allocation block"),
            std::string::npos)
      << "FORMAT.md still promises zero padding to the allocation block";
  EXPECT_NE(text.find("zeros up to the next logical block of the device"),
            std::string::npos);
  EXPECT_NE(text.find("unspecified"), std::string::npos);
  // The extents still reserve whole allocation blocks (§6 rule 3).
  EXPECT_EQ(mirror_bytes(1), kBlockBytes);
  EXPECT_EQ(mirror_bytes(4097), 2 * kBlockBytes);
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
  // Slice IDs and the next ID survive the round trip (slot version 3).
  EXPECT_EQ(back->slot_version, kSlotVersionCurrent);
  EXPECT_EQ(back->next_slice_id, 9u);
  EXPECT_EQ(back->slices[0].id, 1u);
  EXPECT_EQ(back->slices[1].id, 7u);
  EXPECT_FALSE(back->canary);
  EXPECT_EQ(bytes->at(8), kSlotVersionCurrent);  // the header's version field
}

// §4.2: the canary record survives the round trip; §6 rule 8 refuses a
// canary that is unaligned, outside the region or over a slice.
TEST(Slot, CanaryRecordRoundTripAndRule8) {
  Superblock sb = sample_superblock();
  SliceTable t = sample_table(sb);
  CanaryRecord c;
  c.offset_bytes = 12 << 20;
  for (size_t i = 0; i < c.nonce.size(); ++i) c.nonce[i] = uint8_t(0xa0 + i);
  t.canary = c;
  auto bytes = encode_slot(sb, t);
  ASSERT_TRUE(bytes.ok()) << bytes.error().what();
  auto back = decode_slot(sb, *bytes);
  ASSERT_TRUE(back.ok()) << back.error().what();
  ASSERT_TRUE(back->canary);
  EXPECT_EQ(*back->canary, c);
  for (uint64_t bad : {(12ull << 20) + 4, (16ull << 20) - 32, 16ull << 20,
                       (4ull << 20) + 4032, 8ull}) {
    SliceTable u = t;
    u.canary->offset_bytes = bad;
    auto v = validate_table(sb, u);
    EXPECT_FALSE(v.ok()) << bad;
    if (!v.ok()) {
      EXPECT_EQ(v.error().code, EUCLEAN) << bad;
    }
  }
  // The 64 bytes in memory: magic, the volume's UUID, the nonce, CRC32C.
  auto mem = encode_canary(sb, c);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(mem.data()), 8),
            "PCIMCNRY");
  EXPECT_TRUE(std::equal(sb.uuid.begin(), sb.uuid.end(), mem.begin() + 8));
  EXPECT_TRUE(std::equal(c.nonce.begin(), c.nonce.end(), mem.begin() + 24));
  CanaryRecord other = c;
  other.nonce[0] ^= 1;
  EXPECT_NE(encode_canary(sb, other), mem);
}

// A version-2 slot (the previous release's: a 16-byte table header) is
// still read, with no canary; the next commit writes version 3 (§9).
TEST(Slot, ReadsVersion2) {
  Superblock sb = sample_superblock();
  SliceTable t = sample_table(sb);
  auto v3 = *encode_slot(sb, t);
  // Version 3 -> 2: drop table-header bytes [16, 64) of the payload, then
  // fix the version, the payload size and both CRCs.
  std::vector<uint8_t> v2(v3.begin(), v3.begin() + 64 + 16);
  uint64_t payload = 0;
  for (int b = 0; b < 8; ++b) payload |= uint64_t{v3[24 + b]} << (8 * b);
  v2.insert(v2.end(), v3.begin() + 64 + 64, v3.begin() + 64 + payload);
  const uint64_t payload2 = payload - 48;
  for (int b = 0; b < 8; ++b) v2[24 + b] = uint8_t(payload2 >> (8 * b));
  v2[8] = 2;
  auto put32 = [&](size_t at, uint32_t v) {
    for (int b = 0; b < 4; ++b) v2[at + b] = uint8_t(v >> (8 * b));
  };
  put32(36, crc32c(v2.data() + 64, payload2));
  put32(60, crc32c(v2.data(), 60));
  v2.resize(v3.size(), 0);
  auto back = decode_slot(sb, v2);
  ASSERT_TRUE(back.ok()) << back.error().what();
  EXPECT_EQ(back->slot_version, kSlotVersionIds);
  EXPECT_EQ(back->slices, t.slices);
  EXPECT_EQ(back->next_slice_id, 9u);
  EXPECT_FALSE(back->canary);
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
    e.id = static_cast<uint64_t>(i) + 1;
    t.next_slice_id = e.id + 1;
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

// §6 rule 7: slice IDs are non-zero, unique and below next_slice_id, so a
// removed slice's ID is never given again.
TEST_F(Invariants, SliceIds) {
  t.slices[1].id = 1;
  EXPECT_NE(violation().find("ID 1 appears twice"), std::string::npos);
  t.slices[1].id = 0;
  EXPECT_NE(violation().find("has ID 0"), std::string::npos);
  t.slices[1].id = 9;  // == next_slice_id
  EXPECT_NE(violation().find("has ID 9"), std::string::npos);
  t.slices[1].id = 8;
  EXPECT_EQ(violation(), "");
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

// Issue 13 item 3: a history of generations. What one sync does to the
// table (FORMAT.md §7 steps 1 and 3): the copy next_copy() names gets the
// next generation and becomes current.
uint32_t apply_sync(SliceEntry& e) {
  const uint32_t target = e.next_copy();
  e.copies[target].generation = e.generation() + 1;
  e.current_copy = target;
  return target;
}

TEST(Generations, NextCopyWritesTheOldestAndNeverTheCurrent) {
  SliceEntry e;
  e.copies.resize(3);
  // Unwritten copies first, lowest index first; then the lowest generation.
  const uint32_t expected[] = {0, 1, 2, 0, 1, 2, 0};
  for (uint32_t want : expected) {
    const uint32_t before = e.current_copy;
    const bool had_mirror = e.committed() != nullptr;
    const uint32_t got = apply_sync(e);
    EXPECT_EQ(got, want);
    if (had_mirror) {
      EXPECT_NE(got, before) << "overwrote the current copy";
    }
  }
  // Generations 7 (copy 0), 5 (copy 1), 6 (copy 2): the oldest, copy 1.
  EXPECT_EQ(e.copies[0].generation, 7u);
  EXPECT_EQ(e.copies[1].generation, 5u);
  EXPECT_EQ(e.copies[2].generation, 6u);
  EXPECT_EQ(e.next_copy(), 1u);
  EXPECT_EQ(e.copies_by_generation(), (std::vector<uint32_t>{0, 2, 1}));
  // A copy marked unwritten (fsck --repair) is written before any older
  // generation is overwritten.
  e.copies[2].generation = 0;
  EXPECT_EQ(e.next_copy(), 2u);
  EXPECT_EQ(e.copies_by_generation(), (std::vector<uint32_t>{0, 1}));
  // With one copy, in place.
  SliceEntry one;
  one.copies.resize(1);
  EXPECT_EQ(apply_sync(one), 0u);
  EXPECT_EQ(apply_sync(one), 0u);
}

TEST(Generations, TwoCopiesBehaveAsAB) {
  // The rule before generations: committed() ? 1 - current : current.
  for (uint64_t g0 : {0u, 1u, 2u, 3u})
    for (uint64_t g1 : {0u, 1u, 2u, 3u})
      for (uint32_t cur : {0u, 1u}) {
        SliceEntry e;
        e.copies.resize(2);
        e.copies[0].generation = g0;
        e.copies[1].generation = g1;
        e.current_copy = cur;
        EXPECT_EQ(e.next_copy(), e.committed() ? 1 - cur : cur)
            << g0 << " " << g1 << " " << cur;
      }
}

// A table whose one slice has `copies` copies, every one written.
SliceTable many_copies(const Superblock& sb, uint32_t copies) {
  SliceTable t;
  t.generation = 3;
  t.next_slice_id = 2;
  SliceEntry e;
  e.id = 1;
  e.name = "history";
  e.length_bytes = (2 << 20) + 5;  // 3 chunks
  e.copies.resize(copies);
  for (uint32_t c = 0; c < copies; ++c) {
    MirrorCopy& m = e.copies[c];
    m.extents = {{sb.data_start_sector + c * 4104u, 4104}};
    m.generation = c + 1;
    m.sync_time_ns = 1000 + c;
    m.crc32c = 0x1000 + c;
    m.path = MirrorPath::kBounce;
    m.chunk_crc32c = {c, c + 1, c + 2};
  }
  e.current_copy = copies - 1;
  t.slices.push_back(e);
  return t;
}

TEST(Generations, SixteenCopiesRoundTrip) {
  Superblock sb = sample_superblock();
  sb.mirror_copies = 16;
  sb.incompat_features = kIncompatSliceIds | kIncompatGenerations;
  auto decoded_sb = decode_superblock(encode_superblock(sb));
  ASSERT_TRUE(decoded_sb.ok()) << decoded_sb.error().what();
  EXPECT_EQ(*decoded_sb, sb);
  const SliceTable t = many_copies(sb, 16);
  auto bytes = encode_slot(sb, t);
  ASSERT_TRUE(bytes.ok()) << bytes.error().what();
  auto back = decode_slot(sb, *bytes);
  ASSERT_TRUE(back.ok()) << back.error().what();
  EXPECT_EQ(back->slices, t.slices);
  EXPECT_EQ(back->slices[0].copies.size(), 16u);
  EXPECT_EQ(back->slices[0].next_copy(), 0u);  // generation 1, the oldest
}

TEST(Generations, SeventeenCopiesAreDamagedMetadata) {
  Superblock sb = sample_superblock();
  sb.mirror_copies = 17;
  auto r = decode_superblock(encode_superblock(sb));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EUCLEAN);
  EXPECT_NE(r.error().message.find("mirror_copies is 17"), std::string::npos)
      << r.error().message;
  sb.mirror_copies = 0;
  EXPECT_EQ(decode_superblock(encode_superblock(sb)).error().code, EUCLEAN);

  sb = sample_superblock();
  auto bytes = encode_slot(sb, many_copies(sb, 17));
  ASSERT_TRUE(bytes.ok()) << bytes.error().what();
  auto t = decode_slot(sb, *bytes);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, EUCLEAN);
  EXPECT_NE(t.error().message.find("17 copies"), std::string::npos)
      << t.error().message;
}

TEST(Generations, KnownFeatureBits) {
  EXPECT_EQ(kIncompatGenerations, uint64_t{1} << 2);
  EXPECT_NE(kKnownIncompat & kIncompatGenerations, 0u);
  EXPECT_NE(kKnownIncompat & kIncompatSliceIds, 0u);
}

}  // namespace
}  // namespace pcimirror
