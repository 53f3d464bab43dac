// SliceFs under concurrent use, as the multi-threaded FUSE loop drives it:
// writers, readers and syncs on different slices and on the same slice at
// once. Run under TSan by scripts/dev.sh test. Every mirror must restore to
// a consistent snapshot: each writer fills whole 64 KiB blocks with one
// stamp, and a sync holds the slice's write lock, so a mirrored block is
// never torn.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "fs/mirror.h"
#include "fs/slice_fs.h"
#include "fs/volume.h"
#include "pcimap/file_region.h"
#include "test_util.h"

namespace pcimirror {
namespace {

// A volume on a sparse file, formatted over an 8 MiB memfd region with
// `slices`, and a small engine (256 KiB requests, queue depth 4).
struct Rig {
  Rig(const std::string& name, std::vector<SliceSpec> slices)
      : region(*FileRegion::create_memfd(name, 8 << 20)),
        vol(format(name, std::move(slices))),
        eng(*MirrorEngine::create(vol, *region, engine_options())) {}
  static MirrorOptions engine_options() {
    MirrorOptions mo;
    mo.engine = EngineOptions{256 * 1024, 4, 4};
    return mo;
  }
  Volume format(const std::string& name, std::vector<SliceSpec> slices) {
    auto dev = *BlockDevice::open(file.path(), {});
    FormatRequest req;
    req.memory_spec = "memfd=" + name + ",size=8M";
    req.region_bytes = 8 << 20;
    req.slices = std::move(slices);
    req.meta_slot_bytes = 1 << 20;
    auto plan = *Volume::plan_format(dev, req);
    return *Volume::write_format(std::move(dev), plan.first, plan.second);
  }
  testing::TempFile file{64 << 20};
  std::unique_ptr<FileRegion> region;
  Volume vol;
  std::unique_ptr<MirrorEngine> eng;
};

TEST(Concurrency, WritersReadersAndSyncsOnSharedSlices) {
  Rig rig("conc", {{"a", 0, 2 << 20}, {"b", 2 << 20, 2 << 20}, {"c", 4 << 20, 1 << 20}});
  auto& vol = rig.vol;
  auto& eng = rig.eng;
  SliceFs fs(*eng, {});
  const uint64_t ia = *fs.lookup("a"), ib = *fs.lookup("b"), ic = *fs.lookup("c");
  constexpr size_t kBlock = 64 * 1024;

  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  // Writers sharing a slice own disjoint blocks (`lane` of `lanes`):
  // concurrent writes to the same bytes have no defined result in any file.
  auto writer = [&](uint64_t ino, uint64_t slice_bytes, uint8_t id, unsigned lane,
                    unsigned lanes) {
    std::vector<std::byte> buf(kBlock);
    const uint64_t blocks = slice_bytes / kBlock / lanes;
    for (uint32_t round = 0; !stop; ++round) {
      std::memset(buf.data(), static_cast<int>((id << 4) | (round & 15)), kBlock);
      uint64_t off = ((round * 7 % blocks) * lanes + lane) * kBlock;
      if (!fs.write(ino, off, kBlock, buf.data()).ok()) ++errors;
    }
  };
  auto syncer = [&](uint64_t ino) {
    for (int i = 0; i < 6; ++i)
      if (!fs.sync(ino).ok()) ++errors;
  };
  auto reader = [&](uint64_t ino) {
    std::vector<std::byte> buf(kBlock);
    while (!stop)
      if (!fs.read(ino, 0, kBlock, buf.data()).ok()) ++errors;
    (void)fs.getattr(ino);
    (void)fs.statfs();
  };
  std::vector<std::thread> t;
  t.emplace_back(writer, ia, 2 << 20, 1, 0, 2);
  t.emplace_back(writer, ia, 2 << 20, 2, 1, 2);  // two writers on one slice
  t.emplace_back(writer, ib, 2 << 20, 3, 0, 1);
  t.emplace_back(reader, ia);
  t.emplace_back(reader, ic);
  std::thread s1(syncer, ia), s2(syncer, ib), s3(syncer, ic), s4(syncer, ia);
  s1.join();
  s2.join();
  s3.join();
  s4.join();
  stop = true;
  for (auto& th : t) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(eng->table().slices[0].generation(), 12u);

  // The committed mirror of a verifies, and no 64 KiB block is torn.
  auto fresh = *FileRegion::create_memfd("fresh", 8 << 20);
  auto eng2 = *MirrorEngine::create(vol, *fresh, {});
  ASSERT_TRUE(eng2->restore(testing::slice_id(eng2->table(), "a")).ok());
  for (uint64_t off = 0; off < (2 << 20); off += kBlock) {
    const std::byte first = fresh->base()[off];
    for (size_t i = 0; i < kBlock; i += 512)
      ASSERT_EQ(fresh->base()[off + i], first) << "torn block at " << off;
  }
}

// Write-behind under fire: writers keep completing chunks while the
// write-behind thread writes them ahead and mirrors commit. Every committed
// mirror verifies, and the final mirror at close is exactly memory.
TEST(Concurrency, WriteBehindRacesWritersAndMirrors) {
  Rig rig("wb", {{"a", 0, 4 << 20}, {"b", 4 << 20, (1 << 20) + 4096}});
  auto& vol = rig.vol;
  auto& eng = rig.eng;
  auto& region = rig.region;
  SliceFs fs(*eng, {});
  fs.start_background();
  const uint64_t ia = *fs.lookup("a"), ib = *fs.lookup("b");
  constexpr size_t kBlock = 64 * 1024;

  // A bounded amount of writing (TSan runs this too), with mirrors of the
  // same slices taken all the while.
#ifdef __SANITIZE_THREAD__
  constexpr uint32_t kRounds = 40;  // every write and mirror is slow under TSan
#else
  constexpr uint32_t kRounds = 300;
#endif
  std::atomic<int> writing{3};
  std::atomic<int> errors{0};
  auto writer = [&](uint64_t ino, uint64_t slice_bytes, uint8_t id,
                    unsigned lane, unsigned lanes) {
    std::vector<std::byte> buf(kBlock);
    const uint64_t blocks = slice_bytes / kBlock / lanes;
    for (uint32_t round = 0; round < kRounds; ++round) {
      std::memset(buf.data(), static_cast<int>((id << 4) | (round & 15)),
                  kBlock);
      const uint64_t off = ((round * 5 % blocks) * lanes + lane) * kBlock;
      if (!fs.write(ino, off, kBlock, buf.data()).ok()) ++errors;
      // Syscalls space real writes through the mount; without a pause the
      // writers would only measure the scheduler (and TSan's own locks).
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    --writing;
  };
  std::vector<std::thread> t;
  t.emplace_back(writer, ia, 4 << 20, 1, 0, 2);
  t.emplace_back(writer, ia, 4 << 20, 2, 1, 2);
  t.emplace_back(writer, ib, (1 << 20) + 4096, 3, 0, 1);
  int mirrors = 0;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!fs.sync(ia).ok() ||
        !eng->verify(testing::slice_id(eng->table(), "a")).ok())
      ++errors;
    if (!fs.sync_batch({"a", "b"}).ok() ||
        !eng->verify(testing::slice_id(eng->table(), "b")).ok())
      ++errors;
    ++mirrors;
  } while (writing > 0);
  for (auto& th : t) th.join();
  EXPECT_GE(mirrors, 1);
  ASSERT_TRUE(fs.close(ia, true).ok());
  ASSERT_TRUE(fs.close(ib, true).ok());
  fs.stop_background();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(fs.behind_bytes(), 0u);

  auto fresh = *FileRegion::create_memfd("fresh", 8 << 20);
  auto eng2 = *MirrorEngine::create(vol, *fresh, {});
  for (const char* name : {"a", "b"})
    ASSERT_TRUE(eng2->restore(testing::slice_id(eng2->table(), name)).ok())
        << name;
  EXPECT_EQ(std::memcmp(fresh->base(), region->base(), (5 << 20) + 4096), 0);
}

// Online slice changes (issue 11) race writes, write-behind and mirrors: a
// slice is renamed back and forth and another added and removed while
// writers write (by inode, as open descriptors do) and mirrors commit. No
// write or mirror fails, no memory outside the written slices changes, and
// the final mirrors are exactly memory.
TEST(Concurrency, OnlineSliceChangesRaceWritesAndMirrors) {
  Rig rig("online", {{"a", 0, 2 << 20}, {"b", 2 << 20, 1 << 20}});
  auto& vol = rig.vol;
  auto& eng = rig.eng;
  auto& region = rig.region;
  testing::fill_random(region->base() + (6 << 20), 1 << 20, 5);
  const std::vector<std::byte> spare(region->base() + (6 << 20),
                                     region->base() + (7 << 20));
  SliceFs fs(*eng, {});
  fs.start_background();
  const uint64_t ia = *fs.lookup("a"), ib = *fs.lookup("b");
  constexpr size_t kBlock = 64 * 1024;
#ifdef __SANITIZE_THREAD__
  constexpr int kRounds = 12;
#else
  constexpr int kRounds = 60;
#endif
  std::atomic<int> writing{2};
  std::atomic<int> errors{0};
  auto writer = [&](uint64_t ino, uint64_t slice_bytes, uint8_t id) {
    std::vector<std::byte> buf(kBlock);
    for (int round = 0; round < kRounds * 4; ++round) {
      std::memset(buf.data(), (id << 4) | (round & 15), kBlock);
      const uint64_t off = (round * 3 % (slice_bytes / kBlock)) * kBlock;
      if (!fs.write(ino, off, kBlock, buf.data()).ok()) ++errors;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    --writing;
  };
  std::thread wa(writer, ia, 2 << 20, 1), wb(writer, ib, 1 << 20, 2);
  std::thread renamer([&] {
    for (int i = 0; i < kRounds; ++i) {
      if (!fs.rename_slice("b", "b2").ok()) ++errors;
      if (!fs.rename_slice("b2", "b").ok()) ++errors;
    }
  });
  std::thread adder([&] {
    for (int i = 0; i < kRounds; ++i) {
      if (!fs.add_slice({"tmp", 6 << 20, 1 << 20}).ok()) ++errors;
      if (!fs.remove_slice("tmp").ok()) ++errors;
    }
  });
  while (writing > 0) {
    if (!fs.sync(ib).ok()) ++errors;
    if (!fs.sync_batch({}).ok()) ++errors;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  wa.join();
  wb.join();
  renamer.join();
  adder.join();
  ASSERT_TRUE(fs.close(ia, true).ok());
  ASSERT_TRUE(fs.close(ib, true).ok());
  fs.stop_background();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(fs.list().size(), 2u);
  EXPECT_EQ(std::memcmp(spare.data(), region->base() + (6 << 20), 1 << 20), 0)
      << "memory of a removed slice changed";
  auto fresh = *FileRegion::create_memfd("fresh", 8 << 20);
  auto eng2 = *MirrorEngine::create(vol, *fresh, {});
  for (const char* name : {"a", "b"})
    ASSERT_TRUE(eng2->restore(testing::slice_id(eng2->table(), name)).ok())
        << name;
  EXPECT_EQ(std::memcmp(fresh->base(), region->base(), 3 << 20), 0);
}

// The UPS watch's final mirror (fs/ups_watch.h): writers keep writing while
// the power-fail switch goes on and the final group mirror runs. Every
// write either lands before the mirror or fails with EROFS, so the mirror
// restores to exactly the memory as it is afterwards, with the writers
// still trying. Reads and mirrors go on; switched off, writes land again.
TEST(Concurrency, PowerFailSwitchRacesWritersAndTheFinalMirror) {
  Rig rig("powerfail", {{"a", 0, 2 << 20}, {"b", 2 << 20, 1 << 20}});
  SliceFs fs(*rig.eng, {});
  const uint64_t ia = *fs.lookup("a"), ib = *fs.lookup("b");
  EXPECT_EQ(fs.recent_mb_per_s(), 0.0);
  EXPECT_EQ(fs.save_bytes(), 3u << 20);
  constexpr size_t kBlock = 64 * 1024;
  std::atomic<bool> stop{false};
  std::atomic<int> landed{0}, refused{0}, other{0};
  auto writer = [&](uint64_t ino, uint64_t slice_bytes, uint8_t id) {
    std::vector<std::byte> buf(kBlock);
    for (uint32_t round = 0; !stop; ++round) {
      std::memset(buf.data(), static_cast<int>((id << 4) | (round & 15)),
                  kBlock);
      const uint64_t off = round % (slice_bytes / kBlock) * kBlock;
      auto r = fs.write(ino, off, kBlock, buf.data());
      if (r.ok())
        ++landed;
      else if (r.error().code == EROFS)
        ++refused;
      else
        ++other;
    }
  };
  std::vector<std::thread> t;
  t.emplace_back(writer, ia, 2 << 20, 1);
  t.emplace_back(writer, ia, 2 << 20, 2);
  t.emplace_back(writer, ib, 1 << 20, 3);
  while (landed < 100) std::this_thread::yield();
  fs.set_power_fail_read_only(true, "test: UPS reports OB LB");
  ASSERT_TRUE(fs.sync_batch({}).ok());
  while (refused < 100) std::this_thread::yield();
  EXPECT_TRUE(fs.power_fail_read_only());
  // Refused with EROFS at every entry point; reads and mirrors go on.
  EXPECT_EQ(fs.open(ia, O_WRONLY).error().code, EROFS);
  EXPECT_TRUE(fs.open(ia, O_RDONLY).ok());
  struct stat st {};
  EXPECT_EQ(fs.setattr(ib, st, SliceFs::kSetSize).error().code, EROFS);
  std::vector<std::byte> buf(kBlock);
  EXPECT_TRUE(fs.read(ia, 0, kBlock, buf.data()).ok());
  stop = true;
  for (auto& th : t) th.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(fs.recent_mb_per_s(), 0.0);
  // The final mirror is the memory now: nothing landed after it.
  auto fresh = *FileRegion::create_memfd("powerfail-fresh", 8 << 20);
  auto eng2 = *MirrorEngine::create(rig.vol, *fresh, {});
  for (const char* n : {"a", "b"})
    ASSERT_TRUE(eng2->restore(testing::slice_id(eng2->table(), n)).ok()) << n;
  EXPECT_EQ(std::memcmp(fresh->base(), rig.region->base(), 3 << 20), 0);
  fs.set_power_fail_read_only(false, "test: UPS reports OL");
  EXPECT_TRUE(fs.write(ia, 0, kBlock, buf.data()).ok());
}

}  // namespace

// Reaches a slice's content lock, as a mirror in flight holds it.
struct SliceFsTestPeer {
  static std::unique_lock<WriterPriorityMutex> hold_content(SliceFs& fs,
                                                            uint64_t ino) {
    return std::unique_lock<WriterPriorityMutex>(fs.get(ino)->content);
  }
};

namespace {

// Found by review: a chmod through a descriptor of a slice that is removed
// meanwhile, and replaced by a new slice of the same name, committed the old
// slice's mode and owner onto the new one (and answered ENOENT). The chmod
// now fails with ENOENT and the new slice keeps its own mode and owner.
TEST(Concurrency, StaleChmodDoesNotLandOnANewSliceOfTheSameName) {
  Rig rig("stale", {{"a", 0, 2 << 20}, {"b", 2 << 20, 2 << 20}});
  SliceFs fs(*rig.eng, {});
  const uint64_t old_ino = *fs.lookup("a");
  struct stat owner {};
  owner.st_mode = 0640;
  owner.st_uid = owner.st_gid = 1234;
  ASSERT_TRUE(
      fs.setattr(old_ino, owner,
                 SliceFs::kSetMode | SliceFs::kSetUid | SliceFs::kSetGid)
          .ok());
  Status removed, added;
  Result<struct stat> chmod = make_error(EIO, "not run");
  {
    auto mirror = SliceFsTestPeer::hold_content(fs, old_ino);
    std::thread rm([&] { removed = fs.remove_slice("a"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::thread add([&] { added = fs.add_slice({"a", 6 << 20, 4096}); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::thread ch([&] {
      struct stat m {};
      m.st_mode = 0666;
      chmod = fs.setattr(old_ino, m, SliceFs::kSetMode);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    mirror.unlock();  // the mirror ends: remove, add and chmod go on
    rm.join();
    add.join();
    ch.join();
  }
  ASSERT_TRUE(removed.ok());
  ASSERT_TRUE(added.ok());
  ASSERT_FALSE(chmod.ok());
  EXPECT_EQ(chmod.error().code, ENOENT);
  for (const SliceEntry& e : rig.eng->table().slices) {
    if (e.name != "a") continue;
    EXPECT_EQ(e.offset_bytes, 6u << 20);
    EXPECT_EQ(e.mode, 0644u);
    EXPECT_EQ(e.uid, 0u);
    EXPECT_EQ(e.gid, 0u);
  }
  auto st = *fs.getattr(*fs.lookup("a"));
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

}  // namespace
}  // namespace pcimirror
