// Fault injection (label `crash`): an EIO, a short write or a failed flush at
// every I/O index of a sync and its commit, and an EIO at every read of a
// restore. A failed sync reports EIO, commits nothing, leaves the previous
// mirror restorable, and the filesystem keeps serving the other slices.
#include <gtest/gtest.h>

#include <cstring>

#include "../unit/test_util.h"
#include "fs/mirror.h"
#include "fs/slice_fs.h"
#include "fs/volume.h"
#include "io/faulty_device.h"
#include "pcimap/file_region.h"

namespace pcimirror {
namespace {

using testing::fill_random;
using testing::TempFile;

constexpr uint64_t kRegion = 2 << 20;

struct Rig {
  TempFile file{8 << 20};
  FaultyDevice faulty;
  std::unique_ptr<FileRegion> region = *FileRegion::create_memfd("fault", kRegion);
  std::optional<Volume> vol;
  std::unique_ptr<MirrorEngine> eng;
  std::vector<uint8_t> x;  // slice a's committed content (generation 1)

  Rig() {
    auto dev = *BlockDevice::open(file.path(), {});
    FormatRequest req;
    req.memory_spec = "memfd=fault,size=2M";
    req.region_bytes = kRegion;
    req.slices = {{"a", 0, 300 * 1024 + 5}, {"b", 512 * 1024, 128 * 1024}};
    req.meta_slot_bytes = 64 * 1024;
    auto plan = *Volume::plan_format(dev, req);
    vol.emplace(*Volume::write_format(std::move(dev), plan.first, plan.second));
    vol->device().set_observer(&faulty);
    MirrorOptions mo;
    mo.engine = EngineOptions{64 * 1024, 4, 4};
    eng = *MirrorEngine::create(*vol, *region, mo);
    fill_random(region->base(), 300 * 1024 + 5, 1);
    x.assign(reinterpret_cast<uint8_t*>(region->base()),
             reinterpret_cast<uint8_t*>(region->base()) + 300 * 1024 + 5);
    EXPECT_TRUE(eng->sync("a").ok());
    fill_random(region->base(), 300 * 1024 + 5, 2);  // content Y, not yet mirrored
  }
  // Restores slice a from what is on disk into a fresh region.
  std::vector<uint8_t> restored_a(uint64_t* generation) {
    BlockDevice::OpenOptions o;
    o.exclusive = false;
    o.read_only = true;
    auto v = *Volume::load(*BlockDevice::open(file.path(), o));
    *generation = v.table().slices[0].generation();
    auto fresh = *FileRegion::create_memfd("fresh", kRegion);
    auto e = *MirrorEngine::create(v, *fresh, {});
    auto r = e->restore("a");
    EXPECT_TRUE(r.ok()) << r.error().what();
    return std::vector<uint8_t>(reinterpret_cast<uint8_t*>(fresh->base()),
                                reinterpret_cast<uint8_t*>(fresh->base()) + x.size());
  }
};

int64_t ios_of_a_sync() {
  Rig rig;
  rig.faulty.arm(-1, FaultyDevice::Fault::kNone);
  EXPECT_TRUE(rig.eng->sync("a").ok());
  return rig.faulty.count();
}

TEST(Faults, EioAtEveryIoOfASyncCommitsNothing) {
  const int64_t n = ios_of_a_sync();
  ASSERT_GE(n, 8);  // 5 data writes, a flush, the slot write, a flush
  std::printf("fault points: EIO at each of the %lld I/Os of a sync and its commit\n",
              static_cast<long long>(n));
  for (int64_t i = 0; i < n; ++i) {
    SCOPED_TRACE("EIO at I/O " + std::to_string(i));
    Rig rig;
    std::vector<uint8_t> y(reinterpret_cast<uint8_t*>(rig.region->base()),
                           reinterpret_cast<uint8_t*>(rig.region->base()) + rig.x.size());
    SliceFs fs(*rig.eng, {});
    rig.faulty.arm(i, FaultyDevice::Fault::kEio);
    Status s = fs.sync(*fs.lookup("a"));
    ASSERT_TRUE(rig.faulty.fired());
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, EIO);
    EXPECT_EQ(rig.eng->table().slices[0].generation(), 1u);  // nothing committed

    // What the disk holds now restores intact: the previous mirror, or (a
    // fault on the commit's own write or flush, whose data may have landed)
    // the new one, never a mix.
    uint64_t g = 0;
    auto got = rig.restored_a(&g);
    EXPECT_TRUE((g == 1 && got == rig.x) || (g == 2 && got == y)) << "generation " << g;

    // The filesystem keeps serving: b writes and mirrors; its commit is
    // built from the table without the failed sync.
    auto b = *fs.lookup("b");
    std::vector<std::byte> data(4096, std::byte{7});
    ASSERT_TRUE(fs.write(b, 0, data.size(), data.data()).ok());
    ASSERT_TRUE(fs.sync(b).ok());
    got = rig.restored_a(&g);
    EXPECT_EQ(g, 1u);
    EXPECT_EQ(got, rig.x);
    // And a retry of a succeeds.
    ASSERT_TRUE(fs.sync(*fs.lookup("a")).ok());
    got = rig.restored_a(&g);
    EXPECT_EQ(g, 2u);
    EXPECT_EQ(got, y);
  }
}

TEST(Faults, ShortWriteAtEveryIoIsRequeued) {
  const int64_t n = ios_of_a_sync();
  std::printf("fault points: a short write at each of the %lld I/Os of a sync\n",
              static_cast<long long>(n));
  for (int64_t i = 0; i < n; ++i) {
    SCOPED_TRACE("short write at I/O " + std::to_string(i));
    Rig rig;
    std::vector<uint8_t> y(reinterpret_cast<uint8_t*>(rig.region->base()),
                           reinterpret_cast<uint8_t*>(rig.region->base()) + rig.x.size());
    rig.faulty.arm(i, FaultyDevice::Fault::kShortWrite);
    auto r = rig.eng->sync("a");
    ASSERT_TRUE(r.ok()) << r.error().what();
    uint64_t g = 0;
    EXPECT_EQ(rig.restored_a(&g), y);
    EXPECT_EQ(g, 2u);
  }
}

TEST(Faults, EioAtEveryReadOfARestoreFailsCleanly) {
  Rig rig;
  rig.faulty.arm(-1, FaultyDevice::Fault::kNone);
  ASSERT_TRUE(rig.eng->restore("a").ok());
  const int64_t n = rig.faulty.count();
  ASSERT_GE(n, 10);  // a verify pass and a copy pass of 5 reads each
  std::printf("fault points: EIO at each of the %lld reads of a restore\n",
              static_cast<long long>(n));
  for (int64_t i = 0; i < n; ++i) {
    SCOPED_TRACE("EIO at read " + std::to_string(i));
    std::memset(rig.region->base(), 0x33, rig.x.size());
    rig.faulty.arm(i, FaultyDevice::Fault::kEio);
    auto r = rig.eng->restore("a");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, EIO);
    if (i < n / 2) {  // a fault in the verify pass leaves memory untouched
      for (size_t k = 0; k < rig.x.size(); k += 997)
        ASSERT_EQ(rig.region->base()[k], std::byte{0x33});
    }
  }
  rig.faulty.arm(-1, FaultyDevice::Fault::kNone);
  ASSERT_TRUE(rig.eng->restore("a").ok());
  EXPECT_EQ(std::memcmp(rig.region->base(), rig.x.data(), rig.x.size()), 0);
}

}  // namespace
}  // namespace pcimirror
