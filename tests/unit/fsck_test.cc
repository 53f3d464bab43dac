// fsck --verify and --repair over mirror copies that the device cannot read
// (an unreadable sector, injected by FaultyDevice on a real file) or that
// fail their CRC: every slice and every copy is checked, each damaged copy
// is reported with its errno, copy and bytes, and --repair acts on them in
// one metadata commit.
#include "fs/fsck.h"

#include <gtest/gtest.h>

#include <cstring>

#include "fs/volume.h"
#include "io/faulty_device.h"
#include "pcimap/file_region.h"
#include "test_util.h"

namespace pcimirror {
namespace {

using testing::device_byte;
using testing::fill_random;
using testing::TempFile;
using testing::write_file;

class FsckTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kRegion = 16 << 20;
  TempFile file{64 << 20};
  std::unique_ptr<FileRegion> region = *FileRegion::create_memfd("t", kRegion);
  FaultyDevice faults;
  uint32_t copies_ = 2;  // mirror copies per slice; a fixture may change it

  void SetUp() override {
    auto dev = *BlockDevice::open(file.path(), {});
    FormatRequest req;
    req.memory_spec = "memfd=t,size=16M";
    req.region_bytes = kRegion;
    req.slices = {{"a", 0, 3 << 20},
                  {"b", 4 << 20, (2 << 20) + 17},
                  {"c", 8 << 20, 1 << 20},
                  {"d", 10 << 20, 2 << 20}};
    req.meta_slot_bytes = 1 << 20;
    req.mirror_copies = copies_;
    auto plan = *Volume::plan_format(dev, req);
    auto v = *Volume::write_format(std::move(dev), plan.first, plan.second);
    auto eng = *MirrorEngine::create(v, *region, {});
    // As many generations of every slice as copies: every copy written.
    for (uint64_t seed = 1; seed <= copies_; ++seed) {
      fill_random(region->base(), kRegion, seed);
      for (const char* n : {"a", "b", "c", "d"}) ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), n)).ok());
    }
  }
  SliceTable table() {
    BlockDevice::OpenOptions o;
    o.read_only = true;
    o.exclusive = false;
    return Volume::load(*BlockDevice::open(file.path(), o))->table();
  }
  // fsck --verify [--repair] with every read through `faults`.
  FsckReport fsck(bool repair) {
    BlockDevice::OpenOptions o;
    o.read_only = !repair;
    o.exclusive = false;
    auto dev = *BlockDevice::open(file.path(), o);
    dev.set_observer(&faults);
    FsckOptions fo;
    fo.verify = true;
    fo.repair = repair;
    auto r = run_fsck(std::move(dev), fo);
    EXPECT_TRUE(r.ok()) << "an unreadable copy is a finding, not an "
                           "operational error: "
                        << r.error().what();
    return r.ok() ? *r : FsckReport{};
  }
  static const FsckFinding *damage_of(const FsckReport &r,
                                      const std::string &slice, uint32_t copy) {
    for (const FsckFinding &f : r.findings)
      if (f.damage && f.slice == slice && f.damage->copy == copy) return &f;
    return nullptr;
  }
};

TEST_F(FsckTest, VerifyGoesPastUnreadableCopiesAndRepairActsOnThem) {
  const SliceTable t0 = table();
  const SliceEntry &a = t0.slices[0], &b = t0.slices[1], &d = t0.slices[3];
  // a: current copy unreadable (one sector); b: previous copy unreadable;
  // d: current copy fails its CRC. The first slice's damage used to end the
  // run (EIO, exit 8) before b, c and d were read.
  const uint64_t a_bad =
      device_byte(a.copies[a.current_copy], (1 << 20) + 1024);
  faults.add_unreadable(a_bad, 512);
  faults.add_unreadable(device_byte(b.copies[1 - b.current_copy], 4096), 512);
  uint8_t junk = 0x5a;
  write_file(file.path(), device_byte(d.copies[d.current_copy], 12345), &junk,
             1);

  FsckReport r = fsck(false);
  EXPECT_EQ(r.exit_code(), 4);
  const FsckFinding *fa = damage_of(r, "a", a.current_copy);
  ASSERT_NE(fa, nullptr);
  EXPECT_EQ(fa->severity, FsckFinding::kError);
  EXPECT_FALSE(fa->repaired);
  EXPECT_EQ(fa->damage->code, EIO);
  EXPECT_TRUE(fa->damage->unreadable);
  EXPECT_EQ(fa->damage->generation, 2u);
  ASSERT_EQ(fa->damage->device.size(), 1u);
  EXPECT_LE(fa->damage->device[0].offset_bytes, a_bad);
  EXPECT_GE(
      fa->damage->device[0].offset_bytes + fa->damage->device[0].length_bytes,
      a_bad + 512);
  EXPECT_NE(fa->message.find(
                "slice 'a': current mirror (generation 2) is unreadable"),
            std::string::npos)
      << fa->message;
  EXPECT_NE(fa->message.find("EIO"), std::string::npos) << fa->message;
  const FsckFinding *fb = damage_of(r, "b", 1 - b.current_copy);
  ASSERT_NE(fb, nullptr);
  EXPECT_EQ(fb->severity, FsckFinding::kError);
  EXPECT_EQ(fb->damage->code, EIO);
  EXPECT_EQ(fb->damage->generation, 1u);
  EXPECT_EQ(fb->damage->slice_offset_bytes, 0u);  // the read of [0, 1 MiB)
  const FsckFinding *fd = damage_of(r, "d", d.current_copy);
  ASSERT_NE(fd, nullptr);
  EXPECT_EQ(fd->damage->code, EUCLEAN);
  EXPECT_EQ(fd->damage->slice_offset_bytes, 0u);  // chunk 0
  EXPECT_EQ(damage_of(r, "c", 0), nullptr);
  EXPECT_EQ(damage_of(r, "c", 1), nullptr);
  EXPECT_EQ(table().generation, t0.generation) << "no change without --repair";
  EXPECT_EQ(table().slices, t0.slices);

  // --repair: a and d switch to their intact previous copy, b's unreadable
  // previous copy is marked unwritten; all in one commit.
  r = fsck(true);
  EXPECT_EQ(r.exit_code(), 1);
  for (const FsckFinding &f : r.findings)
    if (f.damage) {
      EXPECT_TRUE(f.repaired) << f.message;
    }
  const SliceTable t1 = table();
  EXPECT_EQ(t1.generation, t0.generation + 1);
  EXPECT_EQ(r.generation, t1.generation) << "the report names the commit";
  EXPECT_EQ(t1.slices[0].current_copy, 1 - a.current_copy);
  EXPECT_EQ(t1.slices[0].copies[a.current_copy].generation, 0u);
  EXPECT_EQ(t1.slices[0].copies[a.current_copy].extents,
            a.copies[a.current_copy].extents);
  EXPECT_EQ(t1.slices[1].current_copy, b.current_copy);
  EXPECT_EQ(t1.slices[1].copies[1 - b.current_copy].generation, 0u);
  EXPECT_EQ(t1.slices[3].current_copy, 1 - d.current_copy);
  EXPECT_EQ(t1.slices[2], t0.slices[2]);

  // The damaged copies are no longer referenced: clean, with the bad
  // sectors still there.
  r = fsck(false);
  EXPECT_EQ(r.exit_code(), 0);
  for (const FsckFinding &f : r.findings) ADD_FAILURE() << f.message;
  // The next sync rewrites the copy marked unwritten.
  {
    Volume v = *Volume::load(*BlockDevice::open(file.path(), {}));
    auto eng = *MirrorEngine::create(v, *region, {});
    faults.clear_unreadable();  // a write remaps a bad sector
    ASSERT_TRUE(eng->sync(testing::slice_id(eng->table(), "b")).ok());
    EXPECT_EQ(eng->table().slices[1].current_copy, 1 - b.current_copy);
  }
  EXPECT_EQ(fsck(false).exit_code(), 0);
}

TEST_F(FsckTest, NoIntactCopyIsLeftAndBothAreReported) {
  const SliceTable t0 = table();
  const SliceEntry &c = t0.slices[2];
  faults.add_unreadable(device_byte(c.copies[0], 0), 512);
  faults.add_unreadable(device_byte(c.copies[1], 512 * 1024), 512);
  FsckReport r = fsck(true);
  EXPECT_EQ(r.exit_code(), 4);
  for (uint32_t i : {0u, 1u}) {
    const FsckFinding *f = damage_of(r, "c", i);
    ASSERT_NE(f, nullptr) << "copy " << i;
    EXPECT_EQ(f->damage->code, EIO);
    EXPECT_FALSE(f->repaired);
  }
  EXPECT_EQ(table().generation, t0.generation) << "nothing repaired: no commit";
  EXPECT_EQ(table().slices, t0.slices);
}

// Issue 13 item 3: fsck with three copies (generations 3, 2, 1 in copies
// 2, 1, 0 of every slice) verifies every written copy and repairs N-wise.
class FsckThreeCopies : public FsckTest {
 public:
  FsckThreeCopies() { copies_ = 3; }
};

TEST_F(FsckThreeCopies, RepairMakesTheNewestIntactCopyCurrent) {
  const SliceTable t0 = table();
  for (const SliceEntry &e : t0.slices) {
    ASSERT_EQ(e.copies.size(), 3u);
    ASSERT_EQ(e.current_copy, 2u);
    ASSERT_EQ(e.next_copy(), 0u);  // generation 1, the oldest
  }
  const SliceEntry &a = t0.slices[0], &b = t0.slices[1], &c = t0.slices[2];
  uint8_t junk = 0x5a;
  // a: the current copy (generation 3) fails its CRC, generation 2 is
  // unreadable: generation 1 is the newest intact one.
  write_file(file.path(), device_byte(a.copies[2], 777), &junk, 1);
  faults.add_unreadable(device_byte(a.copies[1], 2 << 20), 512);
  // b: generation 2 fails its CRC; it is not the copy the next sync
  // writes, so no interrupted sync explains it: an error.
  write_file(file.path(), device_byte(b.copies[1], 5), &junk, 1);
  // c: generation 1, the copy the next sync writes, fails its CRC: what an
  // interrupted sync leaves, information only.
  write_file(file.path(), device_byte(c.copies[0], 5), &junk, 1);
  // d: the current copy fails its CRC and so does generation 1, the copy
  // an interrupted sync writes. The repair makes generation 2 current and
  // marks both unwritten: the next sync writes the former current copy
  // first, so generation 1's copy would no longer be explained.
  const SliceEntry &d = t0.slices[3];
  write_file(file.path(), device_byte(d.copies[2], 99), &junk, 1);
  write_file(file.path(), device_byte(d.copies[0], 99), &junk, 1);

  FsckReport r = fsck(false);
  EXPECT_EQ(r.exit_code(), 4);
  ASSERT_NE(damage_of(r, "a", 2), nullptr);
  EXPECT_NE(damage_of(r, "a", 2)->message.find(
                "older copy (generation 1) is intact: restore falls back"),
            std::string::npos)
      << damage_of(r, "a", 2)->message;
  ASSERT_NE(damage_of(r, "a", 1), nullptr);
  EXPECT_EQ(damage_of(r, "a", 1)->damage->code, EIO);
  ASSERT_NE(damage_of(r, "b", 1), nullptr);
  EXPECT_EQ(damage_of(r, "b", 1)->severity, FsckFinding::kError);
  ASSERT_NE(damage_of(r, "c", 0), nullptr);
  EXPECT_EQ(damage_of(r, "c", 0)->severity, FsckFinding::kInfo);
  ASSERT_NE(damage_of(r, "d", 0), nullptr);
  EXPECT_EQ(damage_of(r, "d", 0)->severity, FsckFinding::kInfo);
  EXPECT_EQ(table().slices, t0.slices);

  r = fsck(true);
  EXPECT_EQ(r.exit_code(), 1);
  const SliceTable t1 = table();
  EXPECT_EQ(t1.generation, t0.generation + 1) << "one commit";
  const SliceEntry &a1 = t1.slices[0];
  EXPECT_EQ(a1.current_copy, 0u);
  EXPECT_EQ(a1.copies[0], a.copies[0]);
  EXPECT_EQ(a1.copies[1].generation, 0u);
  EXPECT_EQ(a1.copies[2].generation, 0u);
  EXPECT_EQ(a1.copies[2].extents, a.copies[2].extents);
  EXPECT_EQ(a1.next_copy(), 1u) << "unwritten copies first, lowest index";
  const SliceEntry &b1 = t1.slices[1];
  EXPECT_EQ(b1.current_copy, 2u);
  EXPECT_EQ(b1.copies[1].generation, 0u);
  EXPECT_EQ(b1.copies[0], b.copies[0]);
  EXPECT_EQ(t1.slices[2], c) << "the interrupted-sync copy is left alone";
  const SliceEntry &d1 = t1.slices[3];
  EXPECT_EQ(d1.current_copy, 1u);
  EXPECT_EQ(d1.copies[1], d.copies[1]);
  EXPECT_EQ(d1.copies[0].generation, 0u);
  EXPECT_EQ(d1.copies[2].generation, 0u);
  ASSERT_NE(damage_of(r, "d", 0), nullptr);
  EXPECT_TRUE(damage_of(r, "d", 0)->repaired);

  // Clean now but for c's information; the next syncs refill a's copies.
  r = fsck(false);
  EXPECT_EQ(r.exit_code(), 0);
  {
    Volume v = *Volume::load(*BlockDevice::open(file.path(), {}));
    auto eng = *MirrorEngine::create(v, *region, {});
    faults.clear_unreadable();
    const uint64_t id = testing::slice_id(eng->table(), "a");
    ASSERT_TRUE(eng->sync(id).ok());
    EXPECT_EQ(eng->table().slices[0].current_copy, 1u);
    EXPECT_EQ(eng->table().slices[0].copies[1].generation, 2u);
    ASSERT_TRUE(eng->sync(id).ok());
    EXPECT_EQ(eng->table().slices[0].current_copy, 2u);
  }
}

}  // namespace
}  // namespace pcimirror
