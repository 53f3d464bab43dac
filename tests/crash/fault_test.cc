// Fault injection (label `crash`): an EIO, a short write or a failed flush at
// every I/O index of a sync and its commit, and an EIO at every read of a
// restore. A failed sync reports EIO, commits nothing, leaves the previous
// mirror restorable, and the filesystem keeps serving the other slices.
// Then a failed io_uring_enter (submit or wait) at every enter of a sync, a
// restore, and of the io_uring engine's own write + flush and read: a
// transient errno (EAGAIN, EBUSY, EINTR) is retried and the data is exact; a
// hard one fails the operation, which returns with nothing in flight.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "../unit/test_util.h"
#include "fs/mirror.h"
#include "fs/slice_fs.h"
#include "fs/volume.h"
#include "io/faulty_device.h"
#include "io/uring_engine.h"
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
    EXPECT_TRUE(eng->sync(testing::slice_id(eng->table(), "a")).ok());
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
    auto r = e->restore(testing::slice_id(e->table(), "a"));
    EXPECT_TRUE(r.ok()) << r.error().what();
    return std::vector<uint8_t>(reinterpret_cast<uint8_t*>(fresh->base()),
                                reinterpret_cast<uint8_t*>(fresh->base()) + x.size());
  }
};

int64_t ios_of_a_sync() {
  Rig rig;
  rig.faulty.arm(-1, FaultyDevice::Fault::kNone);
  EXPECT_TRUE(rig.eng->sync(testing::slice_id(rig.eng->table(), "a")).ok());
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
    auto r = rig.eng->sync(testing::slice_id(rig.eng->table(), "a"));
    ASSERT_TRUE(r.ok()) << r.error().what();
    uint64_t g = 0;
    EXPECT_EQ(rig.restored_a(&g), y);
    EXPECT_EQ(g, 2u);
  }
}

TEST(Faults, EioAtEveryReadOfARestoreFailsCleanly) {
  Rig rig;
  rig.faulty.arm(-1, FaultyDevice::Fault::kNone);
  ASSERT_TRUE(rig.eng->restore(testing::slice_id(rig.eng->table(), "a")).ok());
  const int64_t n = rig.faulty.count();
  ASSERT_GE(n, 10);  // a verify pass and a copy pass of 5 reads each
  std::printf("fault points: EIO at each of the %lld reads of a restore\n",
              static_cast<long long>(n));
  for (int64_t i = 0; i < n; ++i) {
    SCOPED_TRACE("EIO at read " + std::to_string(i));
    std::memset(rig.region->base(), 0x33, rig.x.size());
    rig.faulty.arm(i, FaultyDevice::Fault::kEio);
    RestoreReport failed;
    auto r = rig.eng->restore(testing::slice_id(rig.eng->table(), "a"), {},
                              &failed);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, EIO);
    ASSERT_EQ(failed.damage.size(), 1u);
    EXPECT_TRUE(failed.damage[0].unreadable);
    // The bytes reported written hold the mirror; the rest is untouched. A
    // fault in the verify pass writes nothing.
    ASSERT_LE(failed.written.size(), 1u);
    const uint64_t w =
        failed.written.empty() ? 0 : failed.written[0].length_bytes;
    if (i < n / 2) {
      EXPECT_EQ(w, 0u);
    }
    EXPECT_EQ(std::memcmp(rig.region->base(), rig.x.data(), w), 0);
    for (size_t k = w; k < rig.x.size(); k += 997)
      ASSERT_EQ(rig.region->base()[k], std::byte{0x33});
  }
  rig.faulty.arm(-1, FaultyDevice::Fault::kNone);
  ASSERT_TRUE(rig.eng->restore(testing::slice_id(rig.eng->table(), "a")).ok());
  EXPECT_EQ(std::memcmp(rig.region->base(), rig.x.data(), rig.x.size()), 0);
}

// A failed io_uring_enter at every enter of a sync: EAGAIN is retried and
// the sync lands exactly; EIO fails the sync, commits nothing, and a retry
// succeeds.
TEST(Faults, SubmitFailureAtEveryEnterOfASync) {
  for (int error : {EAGAIN, EIO}) {
    int64_t n = 0;
    for (;; ++n) {
      SCOPED_TRACE(std::string(error == EIO ? "EIO" : "EAGAIN") + " at enter " +
                   std::to_string(n));
      Rig rig;
      std::vector<uint8_t> y(
          reinterpret_cast<uint8_t*>(rig.region->base()),
          reinterpret_cast<uint8_t*>(rig.region->base()) + rig.x.size());
      rig.faulty.arm_enter(n, error);
      auto r = rig.eng->sync(testing::slice_id(rig.eng->table(), "a"));
      if (!rig.faulty.enter_fired()) break;
      uint64_t g = 0;
      if (error == EAGAIN) {
        ASSERT_TRUE(r.ok()) << r.error().what();
        EXPECT_EQ(rig.restored_a(&g), y);
        EXPECT_EQ(g, 2u);
        continue;
      }
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.error().code, EIO) << r.error().what();
      EXPECT_EQ(rig.eng->table().slices[0].generation(), 1u);
      EXPECT_EQ(rig.restored_a(&g), rig.x);
      EXPECT_EQ(g, 1u);
      rig.faulty.arm_enter(-1, 0);
      auto again = rig.eng->sync(testing::slice_id(rig.eng->table(), "a"));
      ASSERT_TRUE(again.ok()) << again.error().what();
      EXPECT_EQ(rig.restored_a(&g), y);
      EXPECT_EQ(g, 2u);
    }
    std::printf("fault points: %s at each of the %lld enters of a sync\n",
                error == EIO ? "EIO" : "EAGAIN", static_cast<long long>(n));
    EXPECT_GE(n, 3);
  }
}

// The same for a restore: EAGAIN restores exactly; EIO fails it, and a
// retry restores exactly.
TEST(Faults, SubmitFailureAtEveryEnterOfARestore) {
  Rig rig;
  for (int error : {EAGAIN, EIO}) {
    int64_t n = 0;
    for (;; ++n) {
      SCOPED_TRACE(std::string(error == EIO ? "EIO" : "EAGAIN") + " at enter " +
                   std::to_string(n));
      std::memset(rig.region->base(), 0x33, rig.x.size());
      rig.faulty.arm_enter(n, error);
      auto r = rig.eng->restore(testing::slice_id(rig.eng->table(), "a"));
      if (!rig.faulty.enter_fired()) break;
      if (error == EIO) {
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.error().code, EIO) << r.error().what();
        rig.faulty.arm_enter(-1, 0);
        r = rig.eng->restore(testing::slice_id(rig.eng->table(), "a"));
      }
      ASSERT_TRUE(r.ok()) << r.error().what();
      EXPECT_EQ(std::memcmp(rig.region->base(), rig.x.data(), rig.x.size()), 0);
    }
    std::printf("fault points: %s at each of the %lld enters of a restore\n",
                error == EIO ? "EIO" : "EAGAIN", static_cast<long long>(n));
    EXPECT_GE(n, 4);
  }
}

// Below, the io_uring engine alone: an image of several chunks written and
// flushed, or read back, with enter number N failing, for every N the
// operation reaches.

// Fails enters as FaultyDevice does and counts what the engine reports
// complete, so a test sees a completion credited twice, a write still in
// flight when its operation returned, or a flush that completed before the
// writes it follows.
class EnterRecorder final : public IoObserver {
 public:
  FaultyDevice faults;
  uint64_t written = 0;  // bytes of successful write completions
  uint64_t read = 0;
  int flushes = 0;
  uint64_t written_at_flush = 0;

  int64_t on_write(uint64_t off, const std::byte* data, uint64_t len,
                   int64_t r) override {
    r = faults.on_write(off, data, len, r);
    if (r > 0) written += static_cast<uint64_t>(r);
    return r;
  }
  int64_t on_read(uint64_t off, uint64_t len, int64_t r) override {
    r = faults.on_read(off, len, r);
    if (r > 0) read += static_cast<uint64_t>(r);
    return r;
  }
  int on_flush(int r) override {
    ++flushes;
    written_at_flush = written;
    return faults.on_flush(r);
  }
  int on_enter() override { return faults.on_enter(); }
};

class ImageSource final : public WriteSource {
 public:
  ImageSource(const std::byte* data, bool allow_direct)
      : data_(data), allow_direct_(allow_direct) {}
  const std::byte* direct(uint64_t off, uint64_t) override {
    return allow_direct_ ? data_ + off : nullptr;
  }
  Status fill(uint64_t off, std::byte* dst, uint64_t n) override {
    std::memcpy(dst, data_ + off, n);
    return {};
  }
  void observe(uint64_t, const std::byte*, uint64_t) override {}

 private:
  const std::byte* data_;
  bool allow_direct_;
};

struct Shape {
  const char* name;
  EngineOptions options;
  bool direct;
  uint64_t length;
};

// Small batched requests, bounced; large eagerly submitted ones, direct;
// one request at a time.
const Shape kShapes[] = {
    {"64KiB qd4 bounced", {64 * 1024, 4, 4}, false, (1 << 20) + 5},
    {"256KiB qd4 direct", {256 * 1024, 4, 2}, true, 2 << 20},
    {"64KiB qd1", {64 * 1024, 1, 1}, false, 512 * 1024},
};

const char* errno_name(int e) {
  switch (e) {
    case EAGAIN:
      return "EAGAIN";
    case EBUSY:
      return "EBUSY";
    case EINTR:
      return "EINTR";
    case EIO:
      return "EIO";
    default:
      return "errno";
  }
}

// A file-backed device, an image of `shape` and its extents: two fragments,
// out of address order.
struct EngineRig {
  const Shape& shape;
  TempFile file{16 << 20};
  EnterRecorder rec;
  BlockDevice dev;
  AlignedBuffer data;
  uint64_t aligned;
  std::vector<DeviceExtent> ext;
  ImageSource src;
  std::unique_ptr<UringEngine> eng;

  explicit EngineRig(const Shape& s, uint64_t seed)
      : shape(s),
        dev(*BlockDevice::open(file.path(), {})),
        data(s.length + 4096, 4096),
        aligned((s.length + 4095) / 4096 * 4096),
        src(data.data(), s.direct) {
    fill_random(data.data(), s.length, seed);
    const uint64_t first = aligned / 2 / 4096 * 4096;
    ext = {{8 << 20, first}, {1 << 20, aligned - first}};
    dev.set_observer(&rec);
    eng = *UringEngine::create(dev, s.options);
  }
  ~EngineRig() { dev.set_observer(nullptr); }

  // The device holds the image at its extents, zero-padded.
  bool on_disk() const {
    std::vector<uint8_t> got;
    for (const DeviceExtent& e : ext) {
      auto part =
          testing::read_file(file.path(), e.offset_bytes, e.length_bytes);
      got.insert(got.end(), part.begin(), part.end());
    }
    if (got.size() != aligned) return false;
    if (std::memcmp(got.data(), data.data(), shape.length) != 0) return false;
    for (uint64_t i = shape.length; i < aligned; ++i)
      if (got[i] != 0) return false;
    return true;
  }
  // Reads the image back; true when each byte arrives exactly once (the
  // sinks run on the copy workers, in any order).
  Status read_back(UringEngine& e, bool* exact) {
    std::vector<uint8_t> back(shape.length);
    std::atomic<uint64_t> got{0};
    auto r =
        e.read(ext, shape.length,
               [&](uint64_t off, const std::byte* d, uint64_t n) -> Status {
                 if (off + n > back.size()) return make_error(EIO, "beyond");
                 std::memcpy(back.data() + off, d, n);
                 got += n;
                 return {};
               });
    *exact = got.load() == shape.length &&
             std::memcmp(back.data(), data.data(), shape.length) == 0;
    if (!r.ok()) return r.take_error();
    return {};
  }
};

constexpr int64_t kMaxFaultPoints = 400;

TEST(SubmitFaults, TransientAtEveryEnterOfAWriteAndFlush) {
  for (const Shape& shape : kShapes) {
    for (int error : {EAGAIN, EBUSY, EINTR}) {
      int64_t n = 0;
      for (; n < kMaxFaultPoints; ++n) {
        SCOPED_TRACE(std::string(shape.name) + ": " + errno_name(error) +
                     " at enter " + std::to_string(n));
        EngineRig rig(shape, static_cast<uint64_t>(n));
        rig.rec.faults.arm_enter(n, error);
        auto st = rig.eng->write(rig.ext, shape.length, rig.src);
        ASSERT_TRUE(st.ok()) << st.error().what();
        // write() returned with every request completed, each once.
        EXPECT_EQ(rig.rec.written, rig.aligned);
        Status fl = rig.eng->flush();
        ASSERT_TRUE(fl.ok()) << fl.error().what();
        if (!rig.rec.faults.enter_fired()) break;
        // The fsync's own completion, after every write's.
        EXPECT_EQ(rig.rec.flushes, 1);
        EXPECT_EQ(rig.rec.written_at_flush, rig.aligned);
        EXPECT_EQ(rig.rec.written, rig.aligned);
        EXPECT_TRUE(rig.on_disk());
      }
      std::printf("%s: %s at each of the %lld enters of a write + flush\n",
                  shape.name, errno_name(error), static_cast<long long>(n));
      EXPECT_GE(n, 2);
      EXPECT_LT(n, kMaxFaultPoints);
    }
  }
}

TEST(SubmitFaults, HardErrorAtEveryEnterOfAWriteAndFlush) {
  for (const Shape& shape : kShapes) {
    int64_t n = 0;
    for (; n < kMaxFaultPoints; ++n) {
      SCOPED_TRACE(std::string(shape.name) + ": EIO at enter " +
                   std::to_string(n));
      EngineRig rig(shape, static_cast<uint64_t>(n));
      rig.rec.faults.arm_enter(n, EIO);
      auto st = rig.eng->write(rig.ext, shape.length, rig.src);
      // Returned with nothing in flight: every write completed already.
      if (st.ok()) {
        EXPECT_EQ(rig.rec.written, rig.aligned);
      }
      Status fl = st.ok() ? rig.eng->flush() : Status();
      if (!rig.rec.faults.enter_fired()) {
        ASSERT_TRUE(st.ok() && fl.ok());
        break;
      }
      ASSERT_FALSE(st.ok() && fl.ok());
      const Error& err = st.ok() ? fl.error() : st.error();
      EXPECT_EQ(err.code, EIO) << err.what();
      if (st.ok()) {
        EXPECT_EQ(rig.rec.written_at_flush, rig.aligned);
      }
      // No completion of the failed operation is left for the next one: a
      // flush on the same engine sees no write complete.
      rig.rec.faults.arm_enter(-1, 0);
      const uint64_t written = rig.rec.written;
      const int flushes = rig.rec.flushes;
      Status again = rig.eng->flush();
      ASSERT_TRUE(again.ok()) << again.error().what();
      EXPECT_EQ(rig.rec.written, written);
      EXPECT_EQ(rig.rec.flushes, flushes + 1);
      // The same engine writes the image again, exactly.
      rig.rec.written = 0;
      auto st2 = rig.eng->write(rig.ext, shape.length, rig.src);
      ASSERT_TRUE(st2.ok()) << st2.error().what();
      EXPECT_EQ(rig.rec.written, rig.aligned);
      ASSERT_TRUE(rig.eng->flush().ok());
      EXPECT_TRUE(rig.on_disk());
    }
    std::printf("%s: EIO at each of the %lld enters of a write + flush\n",
                shape.name, static_cast<long long>(n));
    EXPECT_GE(n, 2);
    EXPECT_LT(n, kMaxFaultPoints);
  }
}

// A ring that fails every enter from N on: the operation fails with EIO, and
// once the engine gives up requests in flight it refuses every later call
// with EIO rather than reuse slots that may still complete; a fresh engine
// writes the image exactly.
TEST(SubmitFaults, BrokenRingDisablesTheEngine) {
  for (const Shape& shape : kShapes) {
    int64_t n = 0;
    for (; n < kMaxFaultPoints; ++n) {
      SCOPED_TRACE(std::string(shape.name) + ": EIO from enter " +
                   std::to_string(n) + " on");
      EngineRig rig(shape, static_cast<uint64_t>(n));
      rig.rec.faults.arm_enter(n, EIO, /*sticky=*/true);
      auto st = rig.eng->write(rig.ext, shape.length, rig.src);
      Status fl = st.ok() ? rig.eng->flush() : Status();
      if (!rig.rec.faults.enter_fired()) break;
      ASSERT_FALSE(st.ok() && fl.ok());
      EXPECT_EQ((st.ok() ? fl.error() : st.error()).code, EIO);
      // The failed operation may have had nothing left in flight; this one
      // has, with the ring still failing: it gives the engine up.
      auto w = rig.eng->write(rig.ext, shape.length, rig.src);
      ASSERT_FALSE(w.ok());
      EXPECT_EQ(w.error().code, EIO);
      rig.rec.faults.arm_enter(-1, 0);
      w = rig.eng->write(rig.ext, shape.length, rig.src);
      ASSERT_FALSE(w.ok());
      EXPECT_EQ(w.error().code, EIO);
      EXPECT_NE(w.error().what().find("disabled"), std::string::npos)
          << w.error().what();
      Status f = rig.eng->flush();
      ASSERT_FALSE(f.ok());
      EXPECT_EQ(f.error().code, EIO);
      bool exact = false;
      Status r = rig.read_back(*rig.eng, &exact);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.error().code, EIO);

      rig.eng.reset();
      auto fresh = UringEngine::create(rig.dev, shape.options);
      ASSERT_TRUE(fresh.ok()) << fresh.error().what();
      ASSERT_TRUE((*fresh)->write(rig.ext, shape.length, rig.src).ok());
      ASSERT_TRUE((*fresh)->flush().ok());
      EXPECT_TRUE(rig.on_disk());
    }
    EXPECT_GE(n, 2);
    EXPECT_LT(n, kMaxFaultPoints);
  }
}

TEST(SubmitFaults, FailureAtEveryEnterOfARead) {
  for (const Shape& shape : kShapes) {
    EngineRig rig(shape, 99);
    ASSERT_TRUE(rig.eng->write(rig.ext, shape.length, rig.src).ok());
    ASSERT_TRUE(rig.eng->flush().ok());
    for (int error : {EAGAIN, EBUSY, EINTR, EIO}) {
      int64_t n = 0;
      for (; n < kMaxFaultPoints; ++n) {
        SCOPED_TRACE(std::string(shape.name) + ": " + errno_name(error) +
                     " at enter " + std::to_string(n));
        rig.rec.faults.arm_enter(n, error);
        rig.rec.read = 0;
        bool exact = false;
        Status r = rig.read_back(*rig.eng, &exact);
        if (!rig.rec.faults.enter_fired()) {
          ASSERT_TRUE(r.ok()) << r.error().what();
          break;
        }
        if (error == EIO) {
          ASSERT_FALSE(r.ok());
          EXPECT_EQ(r.error().code, EIO) << r.error().what();
          // Nothing was left in flight: a flush sees no read complete.
          rig.rec.faults.arm_enter(-1, 0);
          const uint64_t reads = rig.rec.read;
          ASSERT_TRUE(rig.eng->flush().ok());
          EXPECT_EQ(rig.rec.read, reads);
          r = rig.read_back(*rig.eng, &exact);
        } else {
          // Every read completed once.
          EXPECT_EQ(rig.rec.read, rig.aligned);
        }
        ASSERT_TRUE(r.ok()) << r.error().what();
        EXPECT_TRUE(exact);
      }
      std::printf("%s: %s at each of the %lld enters of a read\n", shape.name,
                  errno_name(error), static_cast<long long>(n));
      EXPECT_GE(n, 2);
      EXPECT_LT(n, kMaxFaultPoints);
    }
  }
}

}  // namespace
}  // namespace pcimirror
