// The mirror engine, the volume and SliceFs against a sparse file and an
// emulated (memfd) region: no mount needed.
#include "fs/mirror.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "fs/crc32c.h"
#include "fs/slice_fs.h"
#include "fs/volume.h"
#include "io/faulty_device.h"
#include "pcimap/file_region.h"
#include "pcimap/region_factory.h"
#include "test_util.h"

namespace pcimirror {
namespace {

using testing::device_byte;
using testing::fill_random;
using testing::read_file;
using testing::TempFile;
using testing::write_file;

class MirrorTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kRegion = 16 << 20;
  TempFile file{64 << 20};
  std::unique_ptr<FileRegion> region = *FileRegion::create_memfd("t", kRegion);

  std::vector<SliceSpec> slices = {
      {"a", 0, 4 << 20},
      {"b", 5 << 20, (2 << 20) + 17},  // unaligned length
      {"c", (8 << 20) + 3, 1},         // one byte at an odd offset
      {"d", (9 << 20) + 1, 10 * 512 + 17},
  };

  Volume format(uint32_t copies = 2) {
    auto dev = *BlockDevice::open(file.path(), {});
    FormatRequest req;
    req.memory_spec = "memfd=t,size=16M";
    req.region_bytes = kRegion;
    req.slices = slices;
    req.meta_slot_bytes = 1 << 20;
    req.mirror_copies = copies;
    auto plan = Volume::plan_format(dev, req);
    EXPECT_TRUE(plan.ok()) << plan.error().what();
    auto v = Volume::write_format(std::move(dev), plan->first, plan->second);
    EXPECT_TRUE(v.ok()) << v.error().what();
    return std::move(v).value();
  }
  // Loads the volume again through a second, shared read-only open, as
  // `pcimirror status` does while the daemon holds the device.
  static BlockDevice open_shared(const std::string& path) {
    BlockDevice::OpenOptions o;
    o.read_only = true;
    o.exclusive = false;
    return *BlockDevice::open(path, o);
  }
  Volume reload() { return *Volume::load(open_shared(file.path())); }
  void randomize(uint64_t seed) {
    fill_random(region->base(), kRegion, seed);
  }
  std::vector<uint8_t> window(const SliceSpec& s) const {
    auto* p = reinterpret_cast<const uint8_t*>(region->base()) + s.offset_bytes;
    return std::vector<uint8_t>(p, p + s.length_bytes);
  }
  // Reads a slice's committed mirror straight from the file at its extents.
  std::vector<uint8_t> on_disk(const Volume& v, const std::string& name) {
    for (const SliceEntry& e : v.table().slices) {
      if (e.name != name) continue;
      std::vector<uint8_t> out;
      for (const Extent& x : e.committed()->extents) {
        auto part = read_file(file.path(), x.start_sector * 512, x.sectors * 512);
        out.insert(out.end(), part.begin(), part.end());
      }
      out.resize(e.length_bytes);
      return out;
    }
    return {};
  }
};

TEST_F(MirrorTest, SyncWritesExtentsCommitsAndRestoresExactly) {
  Volume v = format();
  randomize(1);
  MirrorOptions zero_copy;
  zero_copy.bounce = BounceMode::kNever;
  auto eng = *MirrorEngine::create(v, *region, zero_copy);
  for (const auto& s : slices) {
    auto r = eng->sync(testing::slice_id(eng->table(), s.name));
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(r->generation, 1u);
    EXPECT_EQ(r->crc32c, crc32c(window(s).data(), s.length_bytes));
  }
  Volume v2 = reload();
  EXPECT_EQ(v2.table().generation, 1u + slices.size());
  for (const auto& s : slices) EXPECT_EQ(on_disk(v2, s.name), window(s)) << s.name;

  // With bounce=never aligned chunks go zero-copy; unaligned ones bounce.
  auto path_of = [&](const std::string& n) {
    for (auto& e : v2.table().slices) {
      if (e.name == n) return e.committed()->path;
    }
    return MirrorPath::kNone;
  };
  EXPECT_EQ(path_of("a"), MirrorPath::kZeroCopy);
  EXPECT_EQ(path_of("b"), MirrorPath::kMixed);
  EXPECT_EQ(path_of("c"), MirrorPath::kBounce);
  EXPECT_EQ(path_of("d"), MirrorPath::kBounce);

  auto saved = std::vector<uint8_t>(
      reinterpret_cast<uint8_t*>(region->base()),
      reinterpret_cast<uint8_t*>(region->base()) + kRegion);
  auto fresh = *FileRegion::create_memfd("fresh", kRegion);
  auto eng2 = *MirrorEngine::create(v2, *fresh, {});
  for (const auto& s : slices) {
    auto r = eng2->restore(testing::slice_id(eng2->table(), s.name));
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_FALSE(r->fell_back);
    EXPECT_EQ(std::memcmp(fresh->base() + s.offset_bytes,
                          saved.data() + s.offset_bytes, s.length_bytes), 0)
        << s.name;
  }
  // Bytes outside the slices stay zero: restore never writes beyond a window.
  EXPECT_EQ(fresh->base()[(4 << 20) + 5], std::byte{0});
  EXPECT_EQ(fresh->base()[(8 << 20) + 2], std::byte{0});
  EXPECT_EQ(fresh->base()[(8 << 20) + 4], std::byte{0});
}

TEST_F(MirrorTest, BounceAlwaysGivesIdenticalBytesAndCrcs) {
  randomize(2);
  std::vector<std::vector<uint8_t>> disk[2];
  std::vector<uint32_t> crcs[2];
  for (int mode = 0; mode < 2; ++mode) {
    Volume v = format();
    MirrorOptions o;
    o.bounce = mode ? BounceMode::kAlways : BounceMode::kNever;
    auto eng = *MirrorEngine::create(v, *region, o);
    for (const auto& s : slices) {
      auto r = eng->sync(testing::slice_id(eng->table(), s.name));
      ASSERT_TRUE(r.ok());
      if (mode) {
        EXPECT_EQ(r->path, MirrorPath::kBounce);
      }
      crcs[mode].push_back(r->crc32c);
    }
    Volume v2 = reload();
    for (const auto& s : slices) disk[mode].push_back(on_disk(v2, s.name));
  }
  EXPECT_EQ(disk[0], disk[1]);
  EXPECT_EQ(crcs[0], crcs[1]);
}

TEST_F(MirrorTest, ABCopiesAlternateAndKeepThePreviousMirror) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(3);
  auto first = window(slices[0]);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  randomize(4);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  Volume v2 = reload();
  const SliceEntry& e = v2.table().slices[0];
  EXPECT_EQ(e.generation(), 2u);
  EXPECT_EQ(e.current_copy, 1u);
  EXPECT_EQ(e.copies[0].generation, 1u);
  // The previous copy still holds generation 1's bytes.
  std::vector<uint8_t> old;
  for (const Extent& x : e.copies[0].extents) {
    auto part = read_file(file.path(), x.start_sector * 512, x.sectors * 512);
    old.insert(old.end(), part.begin(), part.end());
  }
  old.resize(first.size());
  EXPECT_EQ(old, first);
  EXPECT_EQ(on_disk(v2, "a"), window(slices[0]));
}

TEST_F(MirrorTest, DamagedCurrentCopyFallsBackAndSaysSo) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(5);
  auto gen1 = window(slices[0]);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  randomize(6);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  // Damage one byte in the middle of the current copy.
  const SliceTable t = eng->table();
  const Extent x = t.slices[0].committed()->extents[0];
  uint8_t junk = 0x5a;
  write_file(file.path(), x.start_sector * 512 + (3 << 20) + 7, &junk, 1);
  EXPECT_EQ(eng->verify(testing::slice_id(eng->table(), "a")).error().code,
            EUCLEAN);
  auto fresh = *FileRegion::create_memfd("fresh", kRegion);
  Volume v2 = reload();
  auto eng2 = *MirrorEngine::create(v2, *fresh, {});
  auto r = eng2->restore(testing::slice_id(eng2->table(), "a"));
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_TRUE(r->fell_back);
  EXPECT_EQ(r->generation, 1u);
  EXPECT_NE(r->note.find("damaged"), std::string::npos);
  EXPECT_EQ(std::memcmp(fresh->base(), gen1.data(), gen1.size()), 0);
}

TEST_F(MirrorTest, NoIntactCopyRefusesAndLeavesMemoryUntouched) {
  Volume v = format(1);
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(7);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "b")).ok());
  const Extent x = eng->table().slices[1].committed()->extents[0];
  uint8_t junk = 0xa5;
  write_file(file.path(), x.start_sector * 512 + 100, &junk, 1);
  auto fresh = *FileRegion::create_memfd("fresh", kRegion);
  std::memset(fresh->base(), 0x11, kRegion);
  Volume v2 = reload();
  auto eng2 = *MirrorEngine::create(v2, *fresh, {});
  auto r = eng2->restore(testing::slice_id(eng2->table(), "b"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EUCLEAN);
  EXPECT_NE(r.error().message.find("'b'"), std::string::npos);
  for (uint64_t i = 0; i < kRegion; i += 4093)
    ASSERT_EQ(fresh->base()[i], std::byte{0x11});
}

// Issue 12 defect 6: an unreadable sector (EIO from the device) in the
// current copy is damage to that copy, like a CRC mismatch: restore falls
// back to the intact previous copy, in prepass and inline mode, and the
// report names the copy, the errno and the bytes that failed.
TEST_F(MirrorTest, UnreadableCurrentCopyFallsBackAndSaysWhere) {
  for (RestoreVerify mode : {RestoreVerify::kPrepass, RestoreVerify::kInline}) {
    SCOPED_TRACE(mode == RestoreVerify::kInline ? "inline" : "prepass");
    Volume v = format();
    auto eng = *MirrorEngine::create(v, *region, {});
    randomize(60);
    auto gen1 = window(slices[0]);
    ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
    randomize(61);
    ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
    const SliceEntry a = eng->table().slices[0];
    const uint32_t cur = a.current_copy;
    // One unreadable sector 2 MiB + 4 KiB into the current copy.
    const uint64_t bad = device_byte(*a.committed(), (2 << 20) + 4096);
    FaultyDevice faults;
    faults.add_unreadable(bad, 512);
    Volume v2 = reload();
    v2.device().set_observer(&faults);
    auto fresh = *FileRegion::create_memfd("fresh", kRegion);
    std::memset(fresh->base(), 0x11, kRegion);
    MirrorOptions mo;
    mo.restore_verify = mode;
    auto eng2 = *MirrorEngine::create(v2, *fresh, mo);
    auto r = eng2->restore(testing::slice_id(eng2->table(), "a"));
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_GT(faults.unreadable_hits(), 0);
    EXPECT_TRUE(r->fell_back);
    EXPECT_EQ(r->generation, 1u);
    EXPECT_EQ(std::memcmp(fresh->base(), gen1.data(), gen1.size()), 0);
    ASSERT_EQ(r->damage.size(), 1u);
    const CopyDamage& d = r->damage[0];
    EXPECT_EQ(d.copy, cur);
    EXPECT_EQ(d.generation, 2u);
    EXPECT_EQ(d.code, EIO);
    EXPECT_TRUE(d.unreadable);
    // The failed read covers the bad sector, on the device and in the slice.
    ASSERT_EQ(d.device.size(), 1u);
    EXPECT_LE(d.device[0].offset_bytes, bad);
    EXPECT_GE(d.device[0].offset_bytes + d.device[0].length_bytes, bad + 512);
    EXPECT_LE(d.slice_offset_bytes, (2u << 20) + 4096);
    EXPECT_GE(d.slice_offset_bytes + d.length_bytes, (2u << 20) + 4096 + 512);
    for (const char* want :
         {"unreadable", "EIO", "generation 2", "generation 1"})
      EXPECT_NE(r->note.find(want), std::string::npos)
          << want << ": " << r->note;
    EXPECT_NE(r->note.find("copy " + std::to_string(cur)), std::string::npos)
        << r->note;
    EXPECT_NE(r->note.find(std::to_string(d.device[0].offset_bytes)),
              std::string::npos)
        << "names the device bytes: " << r->note;
    // Written: the whole slice, from the previous copy.
    ASSERT_EQ(r->written.size(), 1u);
    EXPECT_EQ(r->written[0].offset_bytes, 0u);
    EXPECT_EQ(r->written[0].length_bytes, slices[0].length_bytes);
    EXPECT_EQ(r->written[0].copy, 1 - cur);
    EXPECT_EQ(r->written[0].generation, 1u);
  }
}

// No copy readable and intact (prepass): the error names the slice and each
// copy's failure with the current copy's errno, and memory is untouched.
TEST_F(MirrorTest, NoReadableCopyLeavesMemoryUntouchedAndNamesEachCopy) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(62);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  const SliceEntry a = eng->table().slices[0];
  const uint32_t cur = a.current_copy;
  FaultyDevice faults;
  faults.add_unreadable(device_byte(a.copies[cur], 3 << 20), 4096);
  // The previous copy fails its CRC (a flipped byte).
  uint8_t junk = 0x77;
  write_file(file.path(), device_byte(a.copies[1 - cur], (1 << 20) + 5), &junk,
             1);
  Volume v2 = reload();
  v2.device().set_observer(&faults);
  auto fresh = *FileRegion::create_memfd("fresh", kRegion);
  std::memset(fresh->base(), 0x11, kRegion);
  auto eng2 = *MirrorEngine::create(v2, *fresh, {});
  RestoreReport failed;
  auto r = eng2->restore(testing::slice_id(eng2->table(), "a"), {}, &failed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
  const std::string& m = r.error().message;
  for (std::string want :
       {std::string("'a'"), "copy " + std::to_string(cur),
        "copy " + std::to_string(1 - cur), std::string("EIO"),
        std::string("fails its CRC32C"), std::string("untouched")})
    EXPECT_NE(m.find(want), std::string::npos) << want << ": " << m;
  ASSERT_EQ(failed.damage.size(), 2u);
  EXPECT_TRUE(failed.damage[0].unreadable);
  EXPECT_EQ(failed.damage[1].code, EUCLEAN);
  EXPECT_EQ(failed.damage[1].slice_offset_bytes, 1u << 20);
  EXPECT_TRUE(failed.written.empty());
  for (uint64_t i = 0; i < kRegion; i += 4093)
    ASSERT_EQ(fresh->base()[i], std::byte{0x11});
}

// restore_verify=inline writes verified chunks before an unreadable one; if
// no copy restores then, the report and the error say which bytes of device
// memory were written, and from which copy.
TEST_F(MirrorTest, InlinePartialRestoreReportsTheBytesWritten) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(63);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "b")).ok());
  randomize(64);
  auto gen2 = window(slices[1]);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "b")).ok());
  const SliceEntry b = eng->table().slices[1];
  const uint32_t cur = b.current_copy;
  FaultyDevice faults;
  faults.add_unreadable(device_byte(b.copies[cur], (1 << 20) + 512), 512);
  faults.add_unreadable(device_byte(b.copies[1 - cur], 0), 512);
  Volume v2 = reload();
  v2.device().set_observer(&faults);
  auto fresh = *FileRegion::create_memfd("fresh", kRegion);
  std::memset(fresh->base(), 0x11, kRegion);
  MirrorOptions mo;
  mo.restore_verify = RestoreVerify::kInline;
  mo.engine = EngineOptions{1 << 20, 1, 1};  // one read at a time: exact prefix
  auto eng2 = *MirrorEngine::create(v2, *fresh, mo);
  RestoreReport failed;
  auto r = eng2->restore(testing::slice_id(eng2->table(), "b"), {}, &failed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
  const uint64_t off = slices[1].offset_bytes;
  ASSERT_EQ(failed.written.size(), 1u);
  EXPECT_EQ(failed.written[0].offset_bytes, off);
  EXPECT_EQ(failed.written[0].length_bytes, 1u << 20);  // chunk 0 only
  EXPECT_EQ(failed.written[0].copy, cur);
  EXPECT_EQ(failed.written[0].generation, 2u);
  const std::string range =
      "[" + std::to_string(off) + ", " + std::to_string(off + (1 << 20)) + ")";
  EXPECT_NE(r.error().message.find(range), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("restore_verify=inline"), std::string::npos);
  // Memory holds exactly that: chunk 0 of generation 2, the rest as it was.
  EXPECT_EQ(std::memcmp(fresh->base() + off, gen2.data(), 1 << 20), 0);
  for (uint64_t i = off + (1 << 20); i < off + slices[1].length_bytes; i += 997)
    ASSERT_EQ(fresh->base()[i], std::byte{0x11});
}

TEST_F(MirrorTest, NeverMirroredSliceIsSkipped) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  auto r = eng->restore(testing::slice_id(eng->table(), "a"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->skipped);
  EXPECT_EQ(eng->sync(testing::slice_id(eng->table(), "nope")).error().code,
            ENOENT);
}

TEST_F(MirrorTest, CorruptNewestSlotFallsBackToOlderWithWarning) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(8);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a"))
                  .ok());  // generation 2, slot 0
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "b"))
                  .ok());  // generation 3, slot 1
  const Superblock sb = v.superblock();
  uint8_t junk = 0xff;
  write_file(file.path(), sb.meta_slot_sector[1] * 512 + 100, &junk, 1);
  Volume v2 = reload();
  EXPECT_EQ(v2.table().generation, 2u);
  ASSERT_EQ(v2.warnings().size(), 1u);
  EXPECT_NE(v2.warnings()[0].find("slot 1"), std::string::npos);
  EXPECT_EQ(v2.table().slices[1].generation(), 0u);  // b's commit is gone
  EXPECT_EQ(v2.table().slices[0].generation(), 1u);
  // Both slots damaged: refuse, naming both.
  write_file(file.path(), sb.meta_slot_sector[0] * 512 + 100, &junk, 1);
  auto v3 = Volume::load(open_shared(file.path()));
  ASSERT_FALSE(v3.ok());
  EXPECT_NE(v3.error().message.find("both metadata slots"), std::string::npos);
}

TEST_F(MirrorTest, DamagedPrimarySuperblockUsesBackup) {
  format();
  uint8_t junk = 0xff;
  write_file(file.path(), 60, &junk, 1);  // a byte of the label
  Volume v = reload();
  ASSERT_EQ(v.warnings().size(), 1u);
  EXPECT_NE(v.warnings()[0].find("backup"), std::string::npos);
  EXPECT_EQ(v.table().slices.size(), slices.size());
}

TEST_F(MirrorTest, PlanRefusesBadSlices) {
  auto dev = *BlockDevice::open(file.path(), {});
  FormatRequest req;
  req.memory_spec = "memfd=t";
  req.region_bytes = kRegion;
  req.meta_slot_bytes = 1 << 20;
  auto plan = [&](std::vector<SliceSpec> s) {
    req.slices = std::move(s);
    auto p = Volume::plan_format(dev, req);
    return p.ok() ? std::string() : p.error().message;
  };
  EXPECT_NE(plan({{"a", 0, 8 << 20}, {"b", 4 << 20, 1 << 20}}).find("overlap"),
            std::string::npos);
  EXPECT_NE(plan({{"a", 15 << 20, 2 << 20}}).find("beyond the region"),
            std::string::npos);
  EXPECT_NE(plan({{"a", 0, 1}, {"a", 4096, 1}}).find("twice"), std::string::npos);
  EXPECT_NE(plan({{"a/b", 0, 1}}).find("'/'"), std::string::npos);
  EXPECT_NE(plan({{"a", 0, 0}}).find("length 0"), std::string::npos);
  req.region_bytes = 1ull << 40;
  EXPECT_NE(plan({{"a", 0, 1ull << 30}}).find("too small"), std::string::npos);
}

TEST_F(MirrorTest, SliceFsBoundsDirtyTrackingAndFixedSize) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  SliceFs fs(*eng, {});
  auto ino = *fs.lookup("b");
  EXPECT_EQ(fs.lookup("zz").error().code, ENOENT);
  const uint64_t len = slices[1].length_bytes;
  auto st = *fs.getattr(ino);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), len);
  EXPECT_EQ(st.st_blksize, 1 << 20);

  std::vector<std::byte> buf(100, std::byte{7});
  // A write straddling the end is cut; the next one gets ENOSPC.
  EXPECT_EQ(*fs.write(ino, len - 10, 100, buf.data()), 10u);
  EXPECT_EQ(fs.write(ino, len, 100, buf.data()).error().code, ENOSPC);
  EXPECT_EQ(fs.write(ino, UINT64_MAX - 5, 100, buf.data()).error().code, ENOSPC);
  // Neighbouring memory is untouched.
  EXPECT_NE(region->base()[slices[1].offset_bytes + len], std::byte{7});
  std::vector<std::byte> out(100);
  EXPECT_EQ(*fs.read(ino, len - 10, 100, out.data()), 10u);
  EXPECT_EQ(out[9], std::byte{7});
  EXPECT_EQ(*fs.read(ino, len, 100, out.data()), 0u);
  EXPECT_EQ(*fs.read(ino, UINT64_MAX, 100, out.data()), 0u);
  // The zero-copy view of plain memory sees the same bytes and bounds.
  auto view = *fs.read_view(ino, len - 10, 100);
  ASSERT_EQ(view.size(), 10u);
  EXPECT_EQ(view[9], std::byte{7});
  EXPECT_EQ(view.data(), region->base() + slices[1].offset_bytes + len - 10);
  EXPECT_TRUE(fs.read_view(ino, len, 100)->empty());
  EXPECT_EQ(fs.read_view(999, 0, 1).error().code, ENOENT);

  // Truncation leaves the size unchanged; growing is refused.
  struct stat attr {};
  attr.st_size = 0;
  EXPECT_EQ(static_cast<uint64_t>(fs.setattr(ino, attr, SliceFs::kSetSize)->st_size), len);
  attr.st_size = static_cast<off_t>(len + 1);
  EXPECT_EQ(fs.setattr(ino, attr, SliceFs::kSetSize).error().code, EFBIG);

  // Dirty tracking: the write makes a mirror; a second flush does nothing.
  ASSERT_TRUE(fs.close(ino, true).ok());
  EXPECT_EQ(eng->table().slices[1].generation(), 1u);
  ASSERT_TRUE(fs.close(ino, true).ok());
  EXPECT_EQ(eng->table().slices[1].generation(), 1u);
  ASSERT_TRUE(fs.sync(ino).ok());  // fsync always mirrors
  EXPECT_EQ(eng->table().slices[1].generation(), 2u);

  // chmod is committed at once.
  attr.st_mode = 0600;
  ASSERT_TRUE(fs.setattr(ino, attr, SliceFs::kSetMode).ok());
  EXPECT_EQ(reload().table().slices[1].mode, 0600u);

  auto sp = fs.statfs();
  EXPECT_GT(sp.total_bytes, sp.free_bytes);
  EXPECT_EQ(sp.files, slices.size());
}

// Issue 11: truncation zero-fills from the new size to the slice's end and
// never changes the size; nothing outside the slice is written.
TEST_F(MirrorTest, SliceFsTruncationZeroFillsToTheEnd) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  SliceFs fs(*eng, {});
  randomize(11);
  const SliceSpec& b = slices[1];
  const auto before =
      std::vector<std::byte>(region->base(), region->base() + kRegion);
  auto ino = *fs.lookup("b");
  struct stat attr {};
  attr.st_size = 100;
  auto st = fs.setattr(ino, attr, SliceFs::kSetSize);
  ASSERT_TRUE(st.ok()) << st.error().what();
  EXPECT_EQ(static_cast<uint64_t>(st->st_size), b.length_bytes);
  for (uint64_t i = 0; i < kRegion; ++i) {
    const bool zeroed =
        i >= b.offset_bytes + 100 && i < b.offset_bytes + b.length_bytes;
    ASSERT_EQ(region->base()[i], zeroed ? std::byte{0} : before[i]) << i;
  }
  // The truncation is a write: a close after it mirrors the zeros.
  ASSERT_TRUE(fs.close(ino, true).ok());
  EXPECT_EQ(on_disk(reload(), "b"), window(b));
  // O_TRUNC with write access zero-fills everything; read-only does not.
  fill_random(region->base() + b.offset_bytes, b.length_bytes, 12);
  EXPECT_FALSE(*fs.open(ino, O_RDONLY | O_TRUNC));
  EXPECT_NE(window(b), std::vector<uint8_t>(b.length_bytes, 0));
  EXPECT_TRUE(*fs.open(ino, O_WRONLY | O_TRUNC));
  EXPECT_EQ(window(b), std::vector<uint8_t>(b.length_bytes, 0));
  EXPECT_EQ(region->base()[b.offset_bytes + b.length_bytes],
            before[b.offset_bytes + b.length_bytes]);
  attr.st_size = static_cast<off_t>(b.length_bytes + 1);
  EXPECT_EQ(fs.setattr(ino, attr, SliceFs::kSetSize).error().code, EFBIG);
  attr.st_size = -1;
  EXPECT_EQ(fs.setattr(ino, attr, SliceFs::kSetSize).error().code, EINVAL);
}

// Issue 11: slices change online through SliceFs, one commit each, with
// real errnos; the namespace follows at once; memory is never written.
TEST_F(MirrorTest, SliceFsOnlineSliceChanges) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  SliceFs fs(*eng, {});
  randomize(13);
  const auto before =
      std::vector<std::byte>(region->base(), region->base() + kRegion);
  const uint64_t gen0 = eng->table().generation;
  // Refusals change nothing.
  EXPECT_EQ(
      fs.add_slice({"x", slices[0].offset_bytes + 4096, 4096}).error().code,
      EINVAL);  // overlaps a
  EXPECT_EQ(fs.add_slice({"a", 12 << 20, 4096}).error().code, EEXIST);
  EXPECT_EQ(fs.add_slice({"x/y", 12 << 20, 4096}).error().code, EINVAL);
  EXPECT_EQ(fs.add_slice({"x", kRegion - 4096, 8192}).error().code, EINVAL);
  EXPECT_EQ(fs.rename_slice("a", "b").error().code, EEXIST);
  EXPECT_EQ(fs.rename_slice("zz", "y").error().code, ENOENT);
  EXPECT_EQ(fs.remove_slice("zz").error().code, ENOENT);
  EXPECT_EQ(eng->table().generation, gen0);
  EXPECT_EQ(fs.list().size(), slices.size());

  // add: visible at once, dirty until mirrored, then mirrored exactly.
  ASSERT_TRUE(fs.add_slice({"new", 12 << 20, 3 << 20}).ok());
  EXPECT_EQ(eng->table().generation, gen0 + 1);
  auto ino = *fs.lookup("new");
  EXPECT_EQ(static_cast<uint64_t>(fs.getattr(ino)->st_size), 3u << 20);
  EXPECT_EQ(*fs.getxattr(ino, "user.pcimirror.state"), "dirty");
  fs.sync_all_dirty();
  EXPECT_EQ(*fs.getxattr(ino, "user.pcimirror.generation"), "1");
  EXPECT_EQ(*fs.getxattr(ino, "user.pcimirror.state"), "clean");

  // rename: same inode under the new name, the old one is gone.
  ASSERT_TRUE(fs.rename_slice("new", "renamed").ok());
  EXPECT_EQ(fs.lookup("new").error().code, ENOENT);
  EXPECT_EQ(*fs.lookup("renamed"), ino);
  ASSERT_TRUE(fs.sync(ino).ok());
  EXPECT_EQ(*fs.getxattr(ino, "user.pcimirror.generation"), "2");
  const SliceTable t = reload().table();
  EXPECT_TRUE(
      std::any_of(t.slices.begin(), t.slices.end(),
                  [](const SliceEntry& e) { return e.name == "renamed"; }));

  // rm: gone from the namespace; open descriptors get ENOENT; memory stays.
  ASSERT_TRUE(fs.remove_slice("renamed").ok());
  EXPECT_EQ(fs.lookup("renamed").error().code, ENOENT);
  std::byte byte{1};
  EXPECT_EQ(fs.write(ino, 0, 1, &byte).error().code, ENOENT);
  EXPECT_EQ(fs.read(ino, 0, 1, &byte).error().code, ENOENT);
  EXPECT_EQ(fs.sync(ino).error().code, ENOENT);
  EXPECT_EQ(reload().table().slices.size(), slices.size());
  EXPECT_TRUE(std::equal(before.begin(), before.end(), region->base()));

  // Root xattr probes (ls, cp -a, rsync) get ENODATA, not ENOENT.
  EXPECT_EQ(fs.getxattr(kRootIno, "system.posix_acl_access").error().code,
            ENODATA);
  EXPECT_EQ(fs.getxattr(*fs.lookup("a"), "security.selinux").error().code,
            ENODATA);

  SliceFs ro(*eng, {true});
  EXPECT_EQ(ro.add_slice({"y", 12 << 20, 4096}).error().code, EROFS);
  EXPECT_EQ(ro.remove_slice("a").error().code, EROFS);
  EXPECT_EQ(ro.rename_slice("a", "y").error().code, EROFS);
}

TEST_F(MirrorTest, ReadOnlySliceFsRefusesWrites) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  SliceFs fs(*eng, {true});
  auto ino = *fs.lookup("a");
  std::byte b{1};
  EXPECT_EQ(fs.write(ino, 0, 1, &b).error().code, EROFS);
  EXPECT_EQ(fs.open(ino, O_RDWR).error().code, EROFS);
  EXPECT_TRUE(fs.open(ino, O_RDONLY).ok());
}

std::unique_ptr<Region> open_dma(const std::string& text) {
  auto spec = MemorySpec::parse(text);
  EXPECT_TRUE(spec.ok()) << spec.error().what();
  auto r = open_region(*spec);
  EXPECT_TRUE(r.ok()) << r.error().what();
  return r.ok() ? std::move(*r) : nullptr;
}

// A DMA region (issue 14): a file stands in for card memory as c2h and
// h2c at card offset 64 KiB + 1 (every slice misaligned, staged), so sync
// records path dma and restore writes through h2c exactly. A c2h that
// transfers nothing (/dev/null) fails the mirror with EIO naming it, and
// nothing is committed; SliceFs reads and writes return the errno.
TEST_F(MirrorTest, DmaRegionMirrorsRestoresAndFailsWithoutCommitting) {
  constexpr uint64_t kCard = (64 << 10) + 1;
  TempFile card(kCard + kRegion);
  const std::string spec = "c2h=" + card.path() + ",h2c=" + card.path() +
                           ",card_offset=" + std::to_string(kCard) +
                           ",size=16M";
  randomize(7);
  write_file(card.path(), kCard, region->base(), kRegion);
  Volume v = format();
  auto dma = open_dma(spec);
  ASSERT_TRUE(dma);
  {
    auto eng = *MirrorEngine::create(v, *dma, {});
    for (const auto& s : slices) {
      auto r = eng->sync(testing::slice_id(eng->table(), s.name));
      ASSERT_TRUE(r.ok()) << r.error().what();
      EXPECT_EQ(r->path, MirrorPath::kDma);
    }
  }
  Volume v2 = reload();
  for (const auto& s : slices) {
    EXPECT_EQ(on_disk(v2, s.name), window(s)) << s.name;
    EXPECT_EQ(v2.table().find_name(s.name)->committed()->path,
              MirrorPath::kDma);
  }
  // Restore through h2c over clobbered card memory.
  const std::vector<uint8_t> clobber(kRegion, 0x11);
  write_file(card.path(), kCard, clobber.data(), clobber.size());
  {
    auto eng = *MirrorEngine::create(v2, *dma, {});
    for (const auto& s : slices) {
      auto r = eng->restore(testing::slice_id(eng->table(), s.name));
      ASSERT_TRUE(r.ok()) << r.error().what();
      EXPECT_EQ(read_file(card.path(), kCard + s.offset_bytes, s.length_bytes),
                window(s))
          << s.name;
    }
  }
  // A c2h that fails: the mirror fails, nothing is committed.
  auto broken = open_dma("c2h=/dev/null,h2c=/dev/null,size=16M");
  ASSERT_TRUE(broken);
  const uint64_t gen = v2.table().generation;
  {
    auto eng = *MirrorEngine::create(v2, *broken, {});
    auto r = eng->sync(testing::slice_id(eng->table(), "b"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, EIO);
    EXPECT_NE(r.error().message.find("DMA read from /dev/null"),
              std::string::npos)
        << r.error().message;
    EXPECT_EQ(eng->table().generation, gen);
    SliceFs fs(*eng, {});
    auto ino = *fs.lookup("a");
    std::vector<std::byte> buf(4096);
    EXPECT_EQ(fs.read(ino, 0, buf.size(), buf.data()).error().code, EIO);
    EXPECT_EQ(fs.read_view(ino, 0, 4096).error().code, EOPNOTSUPP);
  }
  // An h2c that refuses writes (/dev/full: ENOSPC): SliceFs writes and
  // truncating opens return the errno.
  auto full = open_dma("c2h=/dev/zero,h2c=/dev/full,size=16M");
  ASSERT_TRUE(full);
  {
    auto eng = *MirrorEngine::create(v2, *full, {});
    SliceFs fs(*eng, {});
    auto ino = *fs.lookup("b");
    std::vector<std::byte> buf(4096, std::byte{3});
    EXPECT_EQ(fs.write(ino, 5, buf.size(), buf.data()).error().code, ENOSPC);
    EXPECT_EQ(fs.open(ino, O_RDWR | O_TRUNC).error().code, ENOSPC);
  }
  EXPECT_EQ(reload().table().generation, gen);
}

TEST_F(MirrorTest, RegionTooSmallIsRefused) {
  Volume v = format();
  auto small = *FileRegion::create_memfd("small", 1 << 20);
  auto r = MirrorEngine::create(v, *small, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("too few for slice"), std::string::npos);
}

}  // namespace
}  // namespace pcimirror

namespace pcimirror {
namespace {

TEST_F(MirrorTest, GroupCommitMirrorsSeveralSlicesWithOneCommit) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(11);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  const uint64_t g0 = eng->table().generation;
  randomize(12);
  auto r =
      eng->sync_batch(testing::slice_ids(eng->table(), {"a", "b", "c", "d"}));
  ASSERT_TRUE(r.ok()) << r.error().what();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ(eng->table().generation, g0 + 1);  // one commit for the batch
  Volume v2 = reload();
  for (const auto& s : slices) EXPECT_EQ(on_disk(v2, s.name), window(s)) << s.name;
  EXPECT_EQ(v2.table().slices[0].generation(), 2u);
  EXPECT_EQ(v2.table().slices[1].generation(), 1u);
  EXPECT_EQ(eng->sync_batch(testing::slice_ids(eng->table(), {"a", "nope"}))
                .error()
                .code,
            ENOENT);
  EXPECT_EQ(eng->table().generation, g0 + 1);  // the refused batch committed nothing
}

}  // namespace
}  // namespace pcimirror

namespace pcimirror {
namespace {

TEST_F(MirrorTest, InlineRestoreMatchesAndFallsBackOnDamage) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(21);
  auto gen1 = window(slices[0]);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "b")).ok());
  randomize(22);
  auto gen2 = window(slices[0]);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  MirrorOptions inl;
  inl.restore_verify = RestoreVerify::kInline;
  {
    auto fresh = *FileRegion::create_memfd("fresh", kRegion);
    Volume v2 = reload();
    auto e2 = *MirrorEngine::create(v2, *fresh, inl);
    for (const char* n : {"a", "b"})
      ASSERT_TRUE(e2->restore(testing::slice_id(e2->table(), n)).ok()) << n;
    EXPECT_EQ(std::memcmp(fresh->base(), gen2.data(), gen2.size()), 0);
  }
  // Damage chunk 2 of a's current copy: inline stops there and falls back.
  const SliceTable t = eng->table();
  const Extent x = t.slices[0].committed()->extents[0];
  uint8_t junk = 0x42;
  write_file(file.path(), x.start_sector * 512 + (2 << 20) + 9, &junk, 1);
  auto fresh = *FileRegion::create_memfd("fresh2", kRegion);
  Volume v3 = reload();
  auto e3 = *MirrorEngine::create(v3, *fresh, inl);
  auto r = e3->restore(testing::slice_id(e3->table(), "a"));
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_TRUE(r->fell_back);
  EXPECT_EQ(std::memcmp(fresh->base(), gen1.data(), gen1.size()), 0);
  // b has no previous copy: damage makes inline refuse, saying what it wrote.
  const Extent xb = t.slices[1].committed()->extents[0];
  write_file(file.path(), xb.start_sector * 512 + (1 << 20) + 3, &junk, 1);
  auto rb = e3->restore(testing::slice_id(e3->table(), "b"));
  ASSERT_FALSE(rb.ok());
  EXPECT_NE(rb.error().message.find("restore_verify=inline"), std::string::npos);
}

TEST_F(MirrorTest, WriteBehindThenSyncWritesOnlyTheRest) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(21);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a"))
                  .ok());            // generation 1 in copy 0
  const SliceSpec& a = slices[0];    // 4 MiB: four CRC chunks
  const auto before = on_disk(reload(), "a");
  randomize(22);
  WriteBehind wb;
  ASSERT_TRUE(
      eng->write_behind(testing::slice_id(eng->table(), "a"), 1, 2, wb).ok());
  EXPECT_EQ(wb.target_copy, 1u);
  EXPECT_EQ(wb.generation, 2u);
  EXPECT_EQ(wb.written, (std::vector<uint8_t>{0, 1, 1, 0}));
  // Nothing is committed: the previous mirror is intact and current.
  EXPECT_EQ(on_disk(reload(), "a"), before);
  EXPECT_EQ(eng->write_behind(testing::slice_id(eng->table(), "a"), 3, 2, wb)
                .error()
                .code,
            EINVAL);
  EXPECT_EQ(eng->write_behind(testing::slice_id(eng->table(), "nope"), 0, 1, wb)
                .error()
                .code,
            ENOENT);

  auto r = eng->sync(testing::slice_id(eng->table(), "a"), {}, {}, &wb);
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->generation, 2u);
  EXPECT_EQ(r->behind_bytes, 2u << 20);
  EXPECT_EQ(r->crc32c, crc32c(window(a).data(), a.length_bytes));
  Volume v2 = reload();
  EXPECT_EQ(on_disk(v2, "a"), window(a));
  EXPECT_TRUE(eng->verify(testing::slice_id(eng->table(), "a")).ok());

  // The write-behind is stale now: refused, and ignored by sync.
  EXPECT_EQ(eng->write_behind(testing::slice_id(eng->table(), "a"), 0, 1, wb)
                .error()
                .code,
            ESTALE);
  randomize(23);
  auto r2 = eng->sync(testing::slice_id(eng->table(), "a"), {}, {}, &wb);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->behind_bytes, 0u);
  EXPECT_EQ(on_disk(reload(), "a"), window(a));
}

TEST_F(MirrorTest, WriteBehindCoversAShortLastChunkAndGroupSync) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(24);
  const SliceSpec& b = slices[1];  // 2 MiB + 17 bytes: three chunks
  WriteBehind wb;
  ASSERT_TRUE(eng->write_behind(testing::slice_id(eng->table(), "b"), 2, 1, wb)
                  .ok());  // the 17-byte chunk
  ASSERT_TRUE(
      eng->write_behind(testing::slice_id(eng->table(), "b"), 0, 1, wb).ok());
  const WriteBehind* behind[] = {nullptr, &wb};
  auto r =
      eng->sync_batch(testing::slice_ids(eng->table(), {"a", "b"}), {}, behind);
  ASSERT_TRUE(r.ok()) << r.error().what();
  for (const SyncReport& rep : *r)
    EXPECT_EQ(rep.behind_bytes, rep.slice == "b" ? (1u << 20) + 17 : 0u)
        << rep.slice;
  Volume v2 = reload();
  EXPECT_EQ(on_disk(v2, "b"), window(b));
  EXPECT_EQ(on_disk(v2, "a"), window(slices[0]));
  EXPECT_TRUE(eng->verify(testing::slice_id(eng->table(), "b")).ok());
}

TEST_F(MirrorTest, WriteBehindNeedsTwoCopiesAndLeavesFailedChunksUnwritten) {
  {
    Volume v1 = format(1);
    auto eng = *MirrorEngine::create(v1, *region, {});
    WriteBehind wb;
    EXPECT_EQ(eng->write_behind(testing::slice_id(eng->table(), "a"), 0, 1, wb)
                  .error()
                  .code,
              EOPNOTSUPP);
  }
  Volume v = format();
  FaultyDevice faults;
  v.device().set_observer(&faults);
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(25);
  WriteBehind wb;
  ASSERT_TRUE(
      eng->write_behind(testing::slice_id(eng->table(), "a"), 0, 1, wb).ok());
  faults.arm(0, FaultyDevice::Fault::kEio);
  EXPECT_EQ(eng->write_behind(testing::slice_id(eng->table(), "a"), 1, 2, wb)
                .error()
                .code,
            EIO);
  EXPECT_EQ(wb.written, (std::vector<uint8_t>{1, 0, 0, 0}));
  faults.arm(-1, FaultyDevice::Fault::kNone);
  auto r = eng->sync(testing::slice_id(eng->table(), "a"), {}, {}, &wb);
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->behind_bytes, 1u << 20);
  v.device().set_observer(nullptr);
  EXPECT_EQ(on_disk(reload(), "a"), window(slices[0]));
}

// Issue 12, defect 1: a write-behind run that fails for any reason clears
// the marks of the chunks it claimed. A mark left from an earlier run made
// the next sync skip a chunk that had been rewritten since, committing its
// old bytes with matching CRCs: a stale mirror that verifies. The engine
// used to return ENOENT and ESTALE before clearing them.
// A failure that is not the copy's (here one failed io_uring_enter while
// the newest mirror is intact) ends the restore with its errno; it never
// makes restore fall back and put the older mirror into device memory.
// Found by review: restore fell back, wrote generation 1 and returned 0.
TEST_F(MirrorTest, EngineFailureDuringRestoreNeverFallsBackToAnOlderMirror) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(71);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  randomize(72);
  const auto gen2 = window(slices[0]);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  Volume v2 = reload();
  FaultyDevice faults;
  v2.device().set_observer(&faults);
  auto fresh = *FileRegion::create_memfd("fresh", kRegion);
  auto eng2 = *MirrorEngine::create(v2, *fresh, {});
  faults.arm_enter(0, EIO);  // the first io_uring_enter fails, once
  RestoreReport failed;
  auto r = eng2->restore(testing::slice_id(eng2->table(), "a"), {}, &failed);
  ASSERT_TRUE(faults.enter_fired());
  ASSERT_FALSE(r.ok()) << "restored generation " << r->generation;
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().message.find("no older copy was used"),
            std::string::npos)
      << r.error().message;
  EXPECT_TRUE(failed.written.empty());
  const auto* p = reinterpret_cast<const uint8_t*>(fresh->base());
  EXPECT_TRUE(std::all_of(p, p + slices[0].length_bytes,
                          [](uint8_t b) { return b == 0; }))
      << "device memory was written";
  // Retried, it restores the newest mirror.
  auto again = eng2->restore(testing::slice_id(eng2->table(), "a"));
  ASSERT_TRUE(again.ok()) << again.error().what();
  EXPECT_EQ(again->generation, 2u);
  EXPECT_FALSE(again->fell_back);
  EXPECT_EQ(std::vector<uint8_t>(p, p + slices[0].length_bytes), gen2);
}

TEST_F(MirrorTest, WriteBehindClearsTheClaimedMarksOnEveryError) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  randomize(26);
  ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
  const uint64_t a = testing::slice_id(eng->table(), "a");
  WriteBehind wb;
  ASSERT_TRUE(eng->write_behind(a, 0, 4, wb).ok());
  ASSERT_EQ(wb.written, (std::vector<uint8_t>{1, 1, 1, 1}));
  // ENOENT: no slice has the ID (one removed meanwhile).
  EXPECT_EQ(eng->write_behind(a + 1000, 0, 1, wb).error().code, ENOENT);
  EXPECT_EQ(wb.written, (std::vector<uint8_t>{0, 1, 1, 1}));
  // EINVAL: the part of the run inside the slice is cleared too.
  EXPECT_EQ(eng->write_behind(a, 3, 2, wb).error().code, EINVAL);
  EXPECT_EQ(wb.written, (std::vector<uint8_t>{0, 1, 1, 0}));
  // ESTALE: another mirror was committed meanwhile.
  WriteBehind old = wb;
  ASSERT_TRUE(eng->sync(a).ok());
  EXPECT_EQ(eng->write_behind(a, 1, 1, old).error().code, ESTALE);
  EXPECT_EQ(old.written, (std::vector<uint8_t>{0, 0, 1, 0}));
  // A write-behind of another slice never matches this one's sync.
  WriteBehind of_b;
  ASSERT_TRUE(
      eng->write_behind(testing::slice_id(eng->table(), "b"), 0, 1, of_b).ok());
  randomize(27);
  auto r = eng->sync(a, {}, {}, &of_b);
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->behind_bytes, 0u);
  EXPECT_EQ(on_disk(reload(), "a"), window(slices[0]));
}

// An online rename changes a slice's label, never its ID: a mirror or
// write-behind started under the old name goes on to the same slice.
TEST_F(MirrorTest, RenameKeepsTheSliceIdAndRemovedIdsAreNeverReused) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  const uint64_t a = testing::slice_id(eng->table(), "a");
  const uint64_t b = testing::slice_id(eng->table(), "b");
  EXPECT_EQ(a, 1u);
  EXPECT_EQ(b, 2u);
  randomize(28);
  WriteBehind wb;
  ASSERT_TRUE(eng->write_behind(a, 0, 2, wb).ok());
  ASSERT_TRUE(eng->rename_slice(a, "renamed").ok());
  EXPECT_EQ(eng->rename_slice(b, "renamed").error().code, EEXIST);
  ASSERT_TRUE(eng->write_behind(a, 2, 2, wb).ok());
  auto r = eng->sync(a, {}, {}, &wb);
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->slice, "renamed");
  EXPECT_EQ(r->behind_bytes, 4u << 20);
  EXPECT_EQ(on_disk(reload(), "renamed"), window(slices[0]));
  // Remove b; a new slice gets a fresh ID, never b's.
  const uint64_t next = eng->table().next_slice_id;
  ASSERT_TRUE(eng->remove_slice(b).ok());
  EXPECT_EQ(eng->sync(b).error().code, ENOENT);
  SliceEntry e;
  e.name = "b";
  e.offset_bytes = slices[1].offset_bytes;
  e.length_bytes = 4096;
  auto added = eng->add_slice(e, false);
  ASSERT_TRUE(added.ok()) << added.error().what();
  EXPECT_EQ(added->slice_id, next);
  EXPECT_NE(added->slice_id, b);
  Volume v2 = reload();
  EXPECT_EQ(v2.table().next_slice_id, next + 1);
  EXPECT_EQ(v2.table().find_name("b")->id, next);
  EXPECT_EQ(v2.table().find_name("renamed")->id, a);
  // A new volume is formatted with the slice_ids feature and slot version 3.
  EXPECT_TRUE(v2.superblock().incompat_features & kIncompatSliceIds);
  EXPECT_EQ(v2.table().slot_version, kSlotVersionCurrent);
  EXPECT_FALSE(v2.needs_upgrade());
}

// SliceFs drives write-behind from writes: chunks a write completes are
// written while the file is open; a chunk written again afterwards is
// written again at close, so the mirror is exactly memory at close.
TEST_F(MirrorTest, SliceFsWriteBehindMirrorsExactlyWhatCloseSees) {
  Volume v = format();
  auto eng = *MirrorEngine::create(v, *region, {});
  SliceFs fs(*eng, {});
  fs.start_background();
  const uint64_t ino = *fs.lookup("a");
  std::vector<std::byte> buf(1 << 20);
  for (uint64_t k = 0; k < 4; ++k) {
    fill_random(buf.data(), buf.size(), 30 + k);
    ASSERT_EQ(*fs.write(ino, k << 20, buf.size(), buf.data()), buf.size());
  }
  for (int i = 0; i < 500 && fs.behind_bytes() < (4u << 20); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(fs.behind_bytes(), 4u << 20);
  EXPECT_EQ(eng->table().slices[0].generation(), 0u);  // nothing committed yet
  // Rewrite part of chunk 1 (not ready: it does not reach the chunk's end).
  fill_random(buf.data(), 4096, 40);
  ASSERT_TRUE(fs.write(ino, (1 << 20) + 8192, 4096, buf.data()).ok());
  ASSERT_TRUE(fs.close(ino, true).ok());
  EXPECT_EQ(eng->table().slices[0].generation(), 1u);
  EXPECT_EQ(on_disk(reload(), "a"), window(slices[0]));
  EXPECT_TRUE(eng->verify(testing::slice_id(eng->table(), "a")).ok());

  // write_behind=off: nothing is written before close.
  SliceFsOptions off;
  off.write_behind = false;
  fs.stop_background();
  SliceFs fs2(*eng, off);
  fs2.start_background();
  ASSERT_TRUE(fs2.write(ino, 0, buf.size(), buf.data()).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(fs2.behind_bytes(), 0u);
  ASSERT_TRUE(fs2.close(ino, true).ok());
  EXPECT_EQ(on_disk(reload(), "a"), window(slices[0]));
}

// Issue 12 item 7: a failed mirror reaches close, fsync and `pcimirror
// sync` with the engine's errno and message (here ENOSPC from the device,
// injected at io_uring_enter), not as EIO; nothing is committed, and the
// next mirror commits.
TEST_F(MirrorTest, SliceFsMirrorErrorsKeepTheirErrno) {
  Volume v = format();
  FaultyDevice faults;
  v.device().set_observer(&faults);
  auto eng = *MirrorEngine::create(v, *region, {});
  SliceFsOptions o;
  o.write_behind = false;
  SliceFs fs(*eng, o);
  const uint64_t ino = *fs.lookup("a");
  std::vector<std::byte> buf(1 << 20);
  fill_random(buf.data(), buf.size(), 50);
  ASSERT_TRUE(fs.write(ino, 0, buf.size(), buf.data()).ok());
  const uint64_t gen0 = eng->table().generation;

  faults.arm_enter(0, ENOSPC);
  Status s = fs.sync(ino);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(faults.enter_fired());
  EXPECT_EQ(s.error().code, ENOSPC) << s.error().what();
  EXPECT_NE(s.error().message.find(file.path()), std::string::npos)
      << "names the device: " << s.error().message;
  EXPECT_EQ(*fs.getxattr(ino, "user.pcimirror.state"), "error");
  faults.arm_enter(0, ENOSPC);
  s = fs.close(ino, true);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENOSPC) << s.error().what();
  faults.arm_enter(0, ENOSPC);
  s = fs.sync_batch({"a", "b"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENOSPC) << s.error().what();
  EXPECT_EQ(eng->table().generation, gen0);  // nothing committed
  EXPECT_EQ(*fs.getxattr(ino, "user.pcimirror.generation"), "0");

  faults.arm_enter(-1, 0);
  ASSERT_TRUE(fs.sync(ino).ok());
  EXPECT_EQ(*fs.getxattr(ino, "user.pcimirror.generation"), "1");
  EXPECT_EQ(*fs.getxattr(ino, "user.pcimirror.state"), "clean");
  v.device().set_observer(nullptr);
  EXPECT_EQ(on_disk(reload(), "a"), window(slices[0]));
}

// Issue 12 item 5: the final mirror at unmount reports the slices whose
// mirror failed, with their errors; the others are committed.
TEST_F(MirrorTest, SliceFsSyncAllDirtyReturnsTheFailedSlices) {
  Volume v = format();
  FaultyDevice faults;
  v.device().set_observer(&faults);
  auto eng = *MirrorEngine::create(v, *region, {});
  SliceFsOptions o;
  o.write_behind = false;
  SliceFs fs(*eng, o);
  randomize(51);
  std::vector<std::byte> one(4096);
  fill_random(one.data(), one.size(), 52);
  const uint64_t a = *fs.lookup("a"), b = *fs.lookup("b");
  ASSERT_TRUE(fs.write(a, 0, one.size(), one.data()).ok());
  ASSERT_TRUE(fs.write(b, 0, one.size(), one.data()).ok());

  faults.arm_enter(0, ENOSPC);  // the first mirror (a's) fails
  std::vector<SliceFs::SyncFailure> failed = fs.sync_all_dirty();
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].slice, "a");
  EXPECT_EQ(failed[0].error.code, ENOSPC) << failed[0].error.what();
  EXPECT_EQ(*fs.getxattr(a, "user.pcimirror.generation"), "0");
  EXPECT_EQ(*fs.getxattr(a, "user.pcimirror.state"), "error");
  EXPECT_EQ(*fs.getxattr(b, "user.pcimirror.generation"), "1");
  EXPECT_EQ(*fs.getxattr(b, "user.pcimirror.state"), "clean");

  faults.arm_enter(-1, 0);
  EXPECT_TRUE(fs.sync_all_dirty().empty());
  EXPECT_EQ(*fs.getxattr(a, "user.pcimirror.generation"), "1");
  EXPECT_TRUE(fs.sync_all_dirty().empty());  // nothing dirty left
  v.device().set_observer(nullptr);
  EXPECT_EQ(on_disk(reload(), "a"), window(slices[0]));
  EXPECT_EQ(on_disk(reload(), "b"), window(slices[1]));
}

// Issue 13 item 3: with --copies 3 a slice keeps its last three
// generations; each restores exactly, chosen by generation; a fourth sync
// overwrites only the oldest.
TEST_F(MirrorTest, ThreeCopiesKeepThreeGenerationsEachRestorable) {
  Volume v = format(3);
  EXPECT_NE(v.superblock().incompat_features & kIncompatGenerations, 0u);
  // Copy-major allocation: every slice's copy k before any slice's copy k+1.
  {
    const SliceTable& t = v.table();
    uint64_t last = 0;
    for (uint32_t c = 0; c < 3; ++c)
      for (const SliceEntry& e : t.slices) {
        ASSERT_EQ(e.copies.size(), 3u);
        EXPECT_GT(e.copies[c].extents.front().start_sector, last);
        last = e.copies[c].extents.front().start_sector;
      }
  }
  auto eng = *MirrorEngine::create(v, *region, {});
  const uint64_t id = testing::slice_id(eng->table(), "a");
  std::vector<std::vector<uint8_t>> gens(1);  // gens[g]: data of generation g
  for (uint64_t g = 1; g <= 3; ++g) {
    randomize(100 + g);
    gens.push_back(window(slices[0]));
    auto r = eng->sync(id);
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(r->generation, g);
    EXPECT_EQ(eng->table().slices[0].current_copy, g - 1);
  }
  Volume v2 = reload();
  auto fresh = *FileRegion::create_memfd("fresh", kRegion);
  auto eng2 = *MirrorEngine::create(v2, *fresh, {});
  for (uint64_t g : {2u, 1u, 3u}) {
    SCOPED_TRACE(g);
    std::memset(fresh->base(), 0, kRegion);
    auto r = eng2->restore(id, {}, nullptr, g);
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(r->generation, g);
    EXPECT_FALSE(r->fell_back);
    EXPECT_EQ(std::memcmp(fresh->base(), gens[g].data(), gens[g].size()), 0);
  }
  // The default restores the newest.
  auto newest = eng2->restore(id);
  ASSERT_TRUE(newest.ok());
  EXPECT_EQ(newest->generation, 3u);
  EXPECT_EQ(std::memcmp(fresh->base(), gens[3].data(), gens[3].size()), 0);

  // A fourth sync overwrites generation 1's copy (copy 0) and no other.
  const SliceEntry before = eng->table().slices[0];
  randomize(104);
  gens.push_back(window(slices[0]));
  ASSERT_TRUE(eng->sync(id).ok());
  const SliceEntry after = eng->table().slices[0];
  EXPECT_EQ(after.current_copy, 0u);
  EXPECT_EQ(after.copies[0].generation, 4u);
  EXPECT_EQ(after.copies[1], before.copies[1]);
  EXPECT_EQ(after.copies[2], before.copies[2]);
  Volume v3 = reload();
  auto eng3 = *MirrorEngine::create(v3, *fresh, {});
  std::memset(fresh->base(), 0x11, kRegion);
  auto gone = eng3->restore(id, {}, nullptr, 1);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ENOENT);
  EXPECT_NE(gone.error().message.find("slice 'a' has no generation 1"),
            std::string::npos)
      << gone.error().message;
  EXPECT_NE(gone.error().message.find("4 (current), 3, 2"), std::string::npos)
      << gone.error().message;
  for (uint64_t i = 0; i < kRegion; i += 4093)
    ASSERT_EQ(fresh->base()[i], std::byte{0x11});
  for (uint64_t g : {2u, 3u, 4u}) {
    auto r = eng3->restore(id, {}, nullptr, g);
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(std::memcmp(fresh->base(), gens[g].data(), gens[g].size()), 0);
  }
}

// Restore's fallback goes down the generations: with the newest (a CRC
// mismatch) and the second newest (an unreadable sector) damaged, the
// third restores, and the report says which generation it used.
TEST_F(MirrorTest, FallbackWalksDownThreeGenerations) {
  for (RestoreVerify mode : {RestoreVerify::kPrepass, RestoreVerify::kInline}) {
    SCOPED_TRACE(mode == RestoreVerify::kInline ? "inline" : "prepass");
    Volume v = format(3);
    auto eng = *MirrorEngine::create(v, *region, {});
    const uint64_t id = testing::slice_id(eng->table(), "a");
    std::vector<uint8_t> gen1;
    for (uint64_t g = 1; g <= 3; ++g) {
      randomize(200 + g);
      if (g == 1) gen1 = window(slices[0]);
      ASSERT_TRUE(eng->sync(id).ok());
    }
    const SliceEntry a = eng->table().slices[0];
    ASSERT_EQ(a.copies[2].generation, 3u);
    ASSERT_EQ(a.current_copy, 2u);
    uint8_t junk = 0x5a;
    write_file(file.path(), device_byte(a.copies[2], (1 << 20) + 9), &junk, 1);
    FaultyDevice faults;
    faults.add_unreadable(device_byte(a.copies[1], 3 << 20), 512);
    Volume v2 = reload();
    v2.device().set_observer(&faults);
    auto fresh = *FileRegion::create_memfd("fresh", kRegion);
    MirrorOptions mo;
    mo.restore_verify = mode;
    auto eng2 = *MirrorEngine::create(v2, *fresh, mo);
    auto r = eng2->restore(id);
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_TRUE(r->fell_back);
    EXPECT_EQ(r->generation, 1u);
    ASSERT_EQ(r->damage.size(), 2u);
    EXPECT_EQ(r->damage[0].generation, 3u);
    EXPECT_EQ(r->damage[0].code, EUCLEAN);
    EXPECT_EQ(r->damage[1].generation, 2u);
    EXPECT_EQ(r->damage[1].code, EIO);
    EXPECT_TRUE(r->damage[1].unreadable);
    EXPECT_NE(r->note.find("restored generation 1 (copy 0)"), std::string::npos)
        << r->note;
    EXPECT_EQ(std::memcmp(fresh->base(), gen1.data(), gen1.size()), 0);
    ASSERT_FALSE(r->written.empty());
    EXPECT_EQ(r->written.back().generation, 1u);

    // A chosen generation that is damaged fails, naming the slice, the
    // generation and the history, and writes no memory, even inline.
    std::memset(fresh->base(), 0x11, kRegion);
    RestoreReport failed;
    auto chosen = eng2->restore(id, {}, &failed, 3);
    ASSERT_FALSE(chosen.ok());
    EXPECT_EQ(chosen.error().code, EUCLEAN);
    const std::string& m = chosen.error().message;
    EXPECT_NE(m.find("restore of slice 'a' generation 3 failed"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("3 (current), 2, 1"), std::string::npos) << m;
    EXPECT_NE(m.find("device memory was left untouched"), std::string::npos)
        << m;
    EXPECT_TRUE(failed.written.empty());
    for (uint64_t i = 0; i < kRegion; i += 4093)
      ASSERT_EQ(fresh->base()[i], std::byte{0x11});
    // The intact one restores when chosen.
    auto one = eng2->restore(id, {}, nullptr, 1);
    ASSERT_TRUE(one.ok()) << one.error().what();
    EXPECT_EQ(std::memcmp(fresh->base(), gen1.data(), gen1.size()), 0);
  }
}

TEST_F(MirrorTest, FormatChecksCopiesAndSizesTheFullTable) {
  auto dev = *BlockDevice::open(file.path(), {});
  FormatRequest req;
  req.memory_spec = "memfd=t,size=16M";
  req.region_bytes = kRegion;
  req.slices = slices;
  req.meta_slot_bytes = 1 << 20;
  for (uint32_t bad : {0u, 17u}) {
    req.mirror_copies = bad;
    auto p = Volume::plan_format(dev, req);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.error().code, EINVAL);
    EXPECT_NE(p.error().message.find("--copies"), std::string::npos);
  }
  req.mirror_copies = 2;
  auto ab = Volume::plan_format(dev, req);
  ASSERT_TRUE(ab.ok());
  EXPECT_EQ(ab->first.incompat_features & kIncompatGenerations, 0u);
  // Slots of 16 KiB hold the unwritten table of 16 one-chunk slices with
  // 16 copies, not the table once every copy carries its chunk CRC: the
  // plan is refused up front (E2BIG) instead of a sync failing later.
  req.slices.clear();
  for (int i = 0; i < 16; ++i)
    req.slices.push_back(
        {"s" + std::to_string(i), static_cast<uint64_t>(i) * 4096, 4096});
  req.mirror_copies = 16;
  req.meta_slot_bytes = 16 << 10;
  auto full = Volume::plan_format(dev, req);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, E2BIG) << full.error().what();
  EXPECT_NE(full.error().message.find("every mirror copy written"),
            std::string::npos)
      << full.error().message;
}

// The copy stage (docs/DESIGN.md): with 1 to 4 copy workers, and requests
// that cut CRC chunks (192 KiB) or not (1 MiB), every slice mirrors with
// the CRCs of its bytes, lands exactly, verifies, and restores byte-exact
// in both restore modes.
TEST_F(MirrorTest, CopyStageIsExactWithOneToFourWorkers) {
  for (unsigned threads : {1u, 2u, 3u, 4u}) {
    for (uint32_t io : {1u << 20, 192u << 10}) {
      SCOPED_TRACE("copy_threads " + std::to_string(threads) + ", io_size " +
                   std::to_string(io));
      Volume v = format();
      randomize(100 + threads);
      MirrorOptions mo;
      mo.engine.io_size_bytes = io;
      mo.engine.copy_threads = threads;
      auto eng = *MirrorEngine::create(v, *region, mo);
      for (int round = 0; round < 2; ++round) {
        for (const auto& s : slices) {
          auto r = eng->sync(testing::slice_id(eng->table(), s.name));
          ASSERT_TRUE(r.ok()) << r.error().what();
          EXPECT_EQ(r->crc32c, crc32c(window(s).data(), s.length_bytes));
        }
      }
      const uint32_t chunk = v.superblock().crc_chunk_bytes;
      Volume v2 = reload();
      for (const auto& s : slices) {
        EXPECT_EQ(on_disk(v2, s.name), window(s)) << s.name;
        const SliceEntry& e =
            *v2.table().find_id(testing::slice_id(eng->table(), s.name));
        const auto w = window(s);
        for (size_t k = 0; k < e.committed()->chunk_crc32c.size(); ++k) {
          const uint64_t start = k * chunk;
          const uint64_t n = std::min<uint64_t>(chunk, w.size() - start);
          EXPECT_EQ(e.committed()->chunk_crc32c[k], crc32c(w.data() + start, n))
              << s.name << " chunk " << k;
        }
        EXPECT_TRUE(eng->verify(e.id).ok()) << s.name;
      }
      for (RestoreVerify rv :
           {RestoreVerify::kPrepass, RestoreVerify::kInline}) {
        auto fresh = *FileRegion::create_memfd("fresh", kRegion);
        std::memset(fresh->base(), 0x5a, kRegion);
        MirrorOptions ro = mo;
        ro.restore_verify = rv;
        auto eng2 = *MirrorEngine::create(v2, *fresh, ro);
        for (const auto& s : slices) {
          auto r = eng2->restore(testing::slice_id(eng2->table(), s.name));
          ASSERT_TRUE(r.ok()) << r.error().what();
          ASSERT_EQ(r->written.size(), 1u);
          EXPECT_EQ(r->written[0].offset_bytes, s.offset_bytes);
          EXPECT_EQ(r->written[0].length_bytes, s.length_bytes);
          EXPECT_EQ(
              std::memcmp(fresh->base() + s.offset_bytes,
                          region->base() + s.offset_bytes, s.length_bytes),
              0)
              << s.name;
        }
        // Nothing outside the slices was written.
        EXPECT_EQ(fresh->base()[(4 << 20) + 10], std::byte{0x5a});
        EXPECT_EQ(fresh->base()[kRegion - 1], std::byte{0x5a});
      }
    }
  }
}

// With four workers and requests that cut CRC chunks, a damaged chunk in
// the middle of the only copy: prepass refuses with EUCLEAN naming that
// chunk and writes no memory; inline writes only verified chunks, never
// the damaged one, and reports exactly the chunks it wrote.
TEST_F(MirrorTest, CopyStageDamageIsRefusedBeforeMemoryIsWritten) {
  Volume v = format(1);
  randomize(77);
  MirrorOptions mo;
  mo.engine.io_size_bytes = 192u << 10;
  mo.engine.copy_threads = 4;
  auto eng = *MirrorEngine::create(v, *region, mo);
  const uint64_t id = testing::slice_id(eng->table(), "a");
  ASSERT_TRUE(eng->sync(id).ok());
  const SliceEntry a = *eng->table().find_id(id);
  uint8_t junk = 0;
  const uint64_t bad_at = (2u << 20) + 777;  // chunk 2 of 4
  junk =
      static_cast<uint8_t>(std::to_integer<uint8_t>(region->base()[bad_at])) ^
      0xff;
  write_file(file.path(), device_byte(*a.committed(), bad_at), &junk, 1);
  for (RestoreVerify rv : {RestoreVerify::kPrepass, RestoreVerify::kInline}) {
    SCOPED_TRACE(rv == RestoreVerify::kPrepass ? "prepass" : "inline");
    Volume v2 = reload();
    auto fresh = *FileRegion::create_memfd("fresh", kRegion);
    std::memset(fresh->base(), 0x11, kRegion);
    MirrorOptions ro = mo;
    ro.restore_verify = rv;
    auto eng2 = *MirrorEngine::create(v2, *fresh, ro);
    RestoreReport failed;
    auto r = eng2->restore(id, {}, &failed);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, EUCLEAN);
    ASSERT_EQ(failed.damage.size(), 1u);
    EXPECT_EQ(failed.damage[0].slice_offset_bytes, 2u << 20);
    EXPECT_EQ(failed.damage[0].length_bytes, 1u << 20);
    EXPECT_NE(r.error().message.find("chunk 2 fails its CRC32C"),
              std::string::npos)
        << r.error().message;
    // Chunk 2 of device memory is never written.
    for (uint64_t i = 2u << 20; i < (3u << 20); i += 4093)
      ASSERT_EQ(fresh->base()[i], std::byte{0x11}) << i;
    if (rv == RestoreVerify::kPrepass) {
      EXPECT_TRUE(failed.written.empty());
      for (uint64_t i = 0; i < kRegion; i += 4093)
        ASSERT_EQ(fresh->base()[i], std::byte{0x11}) << i;
      continue;
    }
    // Inline: each range reported holds the mirror's bytes; the rest of
    // the slice is as it was.
    std::vector<uint8_t> written(a.length_bytes, 0);
    for (const RestoredRange& w : failed.written) {
      EXPECT_EQ(w.generation, 1u);
      EXPECT_EQ(w.offset_bytes % (1u << 20), 0u);
      EXPECT_TRUE(w.offset_bytes + w.length_bytes <= (2u << 20) ||
                  w.offset_bytes >= (3u << 20));
      EXPECT_EQ(std::memcmp(fresh->base() + w.offset_bytes,
                            region->base() + w.offset_bytes, w.length_bytes),
                0);
      std::fill(written.begin() + static_cast<ptrdiff_t>(w.offset_bytes),
                written.begin() +
                    static_cast<ptrdiff_t>(w.offset_bytes + w.length_bytes),
                1);
    }
    for (uint64_t i = 0; i < a.length_bytes; i += 4093)
      if (!written[i]) {
        ASSERT_EQ(fresh->base()[i], std::byte{0x11}) << i;
      }
  }
}

// restore_verify=auto (the default) verifies inline only into memory whose
// canary says it was reset: there a restore that meets damage writes the
// chunks verified before it (nothing in that memory was worth keeping);
// into memory whose canary matches, the same damage leaves every byte as
// it was (a prepass).
TEST_F(MirrorTest, AutoRestoreIsInlineOnlyIntoMemoryThatWasReset) {
  EXPECT_EQ(MirrorOptions{}.restore_verify, RestoreVerify::kAuto);
  Volume v = format(1);  // one copy: damage cannot fall back
  randomize(79);
  auto eng = *MirrorEngine::create(v, *region, {});
  const uint64_t canary_at = 12u << 20;  // outside every slice
  ASSERT_TRUE(eng->set_canary(canary_at).ok());
  const uint64_t id = testing::slice_id(eng->table(), "a");
  ASSERT_TRUE(eng->sync(id).ok());
  const SliceEntry a = *eng->table().find_id(id);
  const uint64_t bad_at = (2u << 20) + 777;  // chunk 2 of 4
  const uint8_t junk = static_cast<uint8_t>(
      std::to_integer<uint8_t>(region->base()[bad_at]) ^ 0xff);
  write_file(file.path(), device_byte(*a.committed(), bad_at), &junk, 1);
  for (bool reset : {false, true}) {
    SCOPED_TRACE(reset ? "memory reset" : "canary matches");
    auto fresh = *FileRegion::create_memfd("fresh", kRegion);
    if (reset) {
      std::memset(fresh->base(), 0x11, kRegion);  // a power cycle
    } else {
      std::memcpy(fresh->base(), region->base(), kRegion);
      std::memset(fresh->base(), 0x11, a.length_bytes);  // slice a only
    }
    Volume v2 = reload();
    auto eng2 = *MirrorEngine::create(v2, *fresh, {});
    RestoreReport failed;
    auto r = eng2->restore(id, {}, &failed);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, EUCLEAN);
    EXPECT_EQ(failed.verified_inline, reset);
    if (!reset) {
      EXPECT_TRUE(failed.written.empty());
      for (uint64_t i = 0; i < a.length_bytes; i += 4093)
        ASSERT_EQ(fresh->base()[i], std::byte{0x11}) << i;
      continue;
    }
    EXPECT_NE(r.error().message.find("restore_verify=auto"), std::string::npos)
        << r.error().message;
    // Chunks verified before the damage may have been written (the read
    // stops at the damage, so how many depends on timing), each with the
    // mirror's bytes; chunk 2 never.
    for (const RestoredRange& w : failed.written) {
      EXPECT_TRUE(w.offset_bytes + w.length_bytes <= (2u << 20) ||
                  w.offset_bytes >= (3u << 20));
      EXPECT_EQ(std::memcmp(fresh->base() + w.offset_bytes,
                            region->base() + w.offset_bytes, w.length_bytes),
                0);
    }
    for (uint64_t i = 2u << 20; i < (3u << 20); i += 4093)
      ASSERT_EQ(fresh->base()[i], std::byte{0x11}) << i;
  }
}

// Review 14: restore_verify=auto must choose inline only when the canary
// says the memory was reset. A canary that cannot be read says nothing
// (MirrorEngine::restore's own comment), so the restore is a prepass: a
// damaged mirror then leaves every byte as it was.
//  - a canary that fails to read (a DMA region whose c2h transfers
//    nothing, /dev/null: EIO) -> prepass (correct in the reviewed commit);
//  - a canary that lies beyond the region (restore --memory into a region
//    that holds every slice but not the canary, or a smaller BAR with
//    ignore_device_id): MemoryGuard::canary_matches once answered "no
//    match" without reading anything, and auto restored inline, writing
//    the verified chunks before the damage into memory it knows nothing
//    about; it is EINVAL now, and the restore a prepass.
class AutoRestoreUnreadableCanary : public MirrorTest {
 protected:
  // A one-copy volume whose slice a (4 MiB) has chunk 2 damaged, with a
  // canary at 12 MiB; returns slice a's ID.
  uint64_t damaged_volume_with_canary() {
    Volume v = format(1);
    randomize(91);
    auto eng = *MirrorEngine::create(v, *region, {});
    EXPECT_TRUE(eng->set_canary(12u << 20).ok());
    const uint64_t id = testing::slice_id(eng->table(), "a");
    EXPECT_TRUE(eng->sync(id).ok());
    const SliceEntry a = *eng->table().find_id(id);
    const uint64_t bad_at = (2u << 20) + 777;
    const uint8_t junk = static_cast<uint8_t>(
        std::to_integer<uint8_t>(region->base()[bad_at]) ^ 0xff);
    write_file(file.path(), device_byte(*a.committed(), bad_at), &junk, 1);
    return id;
  }
};

TEST_F(AutoRestoreUnreadableCanary, CanaryReadErrorIsPrepass) {
  const uint64_t id = damaged_volume_with_canary();
  TempFile card(kRegion);
  const std::vector<uint8_t> keep(kRegion, 0x22);
  write_file(card.path(), 0, keep.data(), keep.size());
  auto dma = open_dma("c2h=/dev/null,h2c=" + card.path() + ",size=16M");
  ASSERT_TRUE(dma);
  Volume v2 = reload();
  auto eng = *MirrorEngine::create(v2, *dma, {});
  RestoreReport failed;
  auto r = eng->restore(id, {}, &failed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EUCLEAN);
  EXPECT_FALSE(failed.verified_inline);
  EXPECT_TRUE(failed.written.empty()) << describe_written(failed.written);
  EXPECT_EQ(read_file(card.path(), 0, kRegion),
            std::vector<uint8_t>(kRegion, 0x22));
}

// A chosen generation (restore --generation) is verified whole first even
// under auto into memory that was reset: its damage writes nothing.
TEST_F(AutoRestoreUnreadableCanary, ChosenGenerationIntoResetMemoryIsPrepass) {
  const uint64_t id = damaged_volume_with_canary();
  auto fresh = *FileRegion::create_memfd("fresh", kRegion);
  std::memset(fresh->base(), 0x22, kRegion);  // a power cycle
  Volume v2 = reload();
  auto eng = *MirrorEngine::create(v2, *fresh, {});
  RestoreReport failed;
  auto r = eng->restore(id, {}, &failed, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EUCLEAN);
  EXPECT_FALSE(failed.verified_inline);
  EXPECT_TRUE(failed.written.empty()) << describe_written(failed.written);
  for (uint64_t i = 0; i < kRegion; i += 4093)
    ASSERT_EQ(fresh->base()[i], std::byte{0x22}) << i;
  // Without --generation the same restore is inline (the memory was reset).
  auto r2 = eng->restore(id, {}, &failed);
  ASSERT_FALSE(r2.ok());
  EXPECT_TRUE(failed.verified_inline);
}

TEST_F(AutoRestoreUnreadableCanary, CanaryBeyondTheRegionIsPrepass) {
  const uint64_t id = damaged_volume_with_canary();
  // 10 MiB: every slice (the last ends below 9.1 MiB), not the canary.
  constexpr uint64_t kSmall = 10u << 20;
  auto small = *FileRegion::create_memfd("small", kSmall);
  std::memset(small->base(), 0x22, kSmall);
  Volume v2 = reload();
  auto eng = MirrorEngine::create(v2, *small, {});
  ASSERT_TRUE(eng.ok()) << eng.error().what();
  RestoreReport failed;
  auto r = (*eng)->restore(id, {}, &failed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EUCLEAN);
  EXPECT_FALSE(failed.verified_inline)
      << "auto chose inline although the canary could not be read";
  EXPECT_TRUE(failed.written.empty())
      << "a refused restore wrote " << describe_written(failed.written);
  uint64_t changed = 0;
  for (uint64_t i = 0; i < kSmall; ++i)
    changed += small->base()[i] != std::byte{0x22};
  EXPECT_EQ(changed, 0u) << "bytes changed by a refused restore";
}

// Resident pages of the mapping that starts at `base`, from
// /proc/self/smaps (its Rss line), or -1 when not found.
int64_t mapped_rss_bytes(const void* base) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  const uintptr_t want = reinterpret_cast<uintptr_t>(base);
  bool inside = false;
  while (std::getline(in, line)) {
    uintptr_t lo = 0, hi = 0;
    // A mapping's header line ("lo-hi perms ..."); attribute lines
    // ("Rss:  12 kB") do not parse as two hex numbers around a '-'.
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2)
      inside = lo == want;
    if (inside && line.rfind("Rss:", 0) == 0) {
      std::istringstream f(line.substr(4));
      int64_t kb = 0;
      f >> kb;
      return kb * 1024;
    }
  }
  return -1;
}

// Mount prefaults the slices' windows (MADV_POPULATE_READ): a memory file
// whose pages no process mapped yet has every page of each window mapped
// afterwards, so the first mirror takes no page faults.
TEST_F(MirrorTest, PrefaultMapsEverySliceWindow) {
  Volume v = format();
  TempFile mem(kRegion, "/dev/shm");
  {
    std::vector<uint8_t> data(kRegion);
    fill_random(data.data(), kRegion, 9);
    write_file(mem.path(), 0, data.data(), data.size());
  }
  auto fr = *FileRegion::open_file(mem.path(), kRegion);
  auto eng = *MirrorEngine::create(v, *fr, {});
  const int64_t before = mapped_rss_bytes(fr->base());
  ASSERT_GE(before, 0) << "no smaps entry for the region";
  EXPECT_EQ(before, 0);
  const uint64_t covered = eng->prefault_windows();
  uint64_t want = 0;
  for (const auto& s : slices) {
    want += s.length_bytes;
  }
  EXPECT_EQ(covered, want);
  const int64_t after = mapped_rss_bytes(fr->base());
  if (after == 0) GTEST_SKIP() << "MADV_POPULATE_READ is not supported here";
  // Page-rounded windows: a, b, c, d are 1024 + 513 + 1 + 3 pages.
  EXPECT_GE(after, int64_t{(1024 + 513 + 1 + 3) * 4096});
  EXPECT_LE(after, int64_t{kRegion});
  // And a sync reads exactly those pages.
  auto r = eng->sync(testing::slice_id(eng->table(), "a"));
  ASSERT_TRUE(r.ok()) << r.error().what();
}

}  // namespace
}  // namespace pcimirror
