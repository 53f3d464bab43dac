#include "io/uring_engine.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "io/copy_workers.h"
#include "test_util.h"

namespace pcimirror {
namespace {

using testing::fill_random;
using testing::read_file;
using testing::TempFile;

// A source over a plain buffer: direct when allowed, else bounced. fill()
// and observe() run on the copy workers; observe() records each chunk and
// checks that it sees exactly the source's bytes. `fail_at`: the fill of
// the chunk holding that mirror offset fails with EIO (or throws).
class BufferSource : public WriteSource {
 public:
  BufferSource(const std::byte* data, bool allow_direct)
      : data_(data), allow_direct_(allow_direct) {}
  const std::byte* direct(uint64_t off, uint64_t) override {
    return allow_direct_ ? data_ + off : nullptr;
  }
  Status fill(uint64_t off, std::byte* dst, uint64_t n) override {
    if (fail_at && off <= *fail_at && *fail_at < off + n) {
      if (throw_) throw std::runtime_error("fill threw");
      return make_error(EIO, "fill failed at " + std::to_string(off));
    }
    std::memcpy(dst, data_ + off, n);
    return {};
  }
  void observe(uint64_t off, const std::byte* d, uint64_t n) override {
    EXPECT_EQ(std::memcmp(d, data_ + off, n), 0) << off;
    std::lock_guard<std::mutex> lock(mu_);
    seen_.emplace_back(off, n);
    observed_ += n;
  }
  // True when the chunks observed cover [0, length) exactly once.
  bool covered_once(uint64_t length) {
    std::lock_guard<std::mutex> lock(mu_);
    std::sort(seen_.begin(), seen_.end());
    uint64_t pos = 0;
    for (auto [off, n] : seen_) {
      if (off != pos) return false;
      pos += n;
    }
    return pos == length;
  }
  uint64_t observed_ = 0;
  std::optional<uint64_t> fail_at;
  bool throw_ = false;

 private:
  const std::byte* data_;
  bool allow_direct_;
  std::mutex mu_;
  std::vector<std::pair<uint64_t, uint64_t>> seen_;
};

struct Case {
  bool direct;
  uint64_t length;
  uint32_t io_size;
  unsigned qd, buffers;
};

// Each shape with 1 to 4 copy workers.
class EngineRoundTrip
    : public ::testing::TestWithParam<std::tuple<Case, unsigned>> {};

TEST_P(EngineRoundTrip, WritesExtentsAndReadsBackExactly) {
  const Case c = std::get<0>(GetParam());
  TempFile file(64 << 20);
  auto dev = BlockDevice::open(file.path(), {});
  ASSERT_TRUE(dev.ok()) << dev.error().what();
  EngineOptions o{c.io_size, c.qd, c.buffers};
  o.copy_threads = std::get<1>(GetParam());
  auto eng = UringEngine::create(*dev, o);
  ASSERT_TRUE(eng.ok()) << eng.error().what();

  AlignedBuffer data(c.length + 4096, 4096);
  fill_random(data.data(), c.length, c.length);
  // Three fragments, out of address order.
  const uint64_t aligned = (c.length + 4095) / 4096 * 4096;
  const uint64_t a = std::max<uint64_t>(4096, aligned / 3 / 4096 * 4096);
  std::vector<DeviceExtent> ext = {{40 << 20, a}, {8 << 20, 4096 * 3},
                                   {20 << 20, aligned}};
  BufferSource src(data.data(), c.direct);
  auto st = (*eng)->write(ext, c.length, src);
  ASSERT_TRUE(st.ok()) << st.error().what();
  ASSERT_TRUE((*eng)->flush().ok());
  EXPECT_EQ(src.observed_, c.length);
  EXPECT_TRUE(src.covered_once(c.length));
  EXPECT_EQ(st->bytes_direct + st->bytes_bounced, c.length);
  if (!c.direct) {
    EXPECT_EQ(st->bytes_direct, 0u);
  }

  // The device holds the data at the extents, zero-padded.
  std::vector<uint8_t> want(reinterpret_cast<uint8_t*>(data.data()),
                            reinterpret_cast<uint8_t*>(data.data()) + c.length);
  std::vector<uint8_t> got;
  uint64_t left = aligned;
  for (auto& e : ext) {
    uint64_t n = std::min(left, e.length_bytes);
    auto part = read_file(file.path(), e.offset_bytes, n);
    got.insert(got.end(), part.begin(), part.end());
    left -= n;
    if (!left) break;
  }
  ASSERT_EQ(got.size(), aligned);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin()));
  for (size_t i = c.length; i < aligned; ++i) ASSERT_EQ(got[i], 0) << i;

  // And the engine reads it back: each chunk once, on the workers, in any
  // order.
  std::vector<uint8_t> back(c.length);
  std::atomic<uint64_t> got_bytes{0};
  auto rs =
      (*eng)->read(ext, c.length,
                   [&](uint64_t off, const std::byte* d, uint64_t n) -> Status {
                     EXPECT_LE(off + n, back.size());
                     std::memcpy(back.data() + off, d, n);
                     got_bytes += n;
                     return {};
                   });
  ASSERT_TRUE(rs.ok()) << rs.error().what();
  EXPECT_EQ(got_bytes.load(), c.length);
  EXPECT_EQ(back, want);
  EXPECT_EQ((*eng)->free_bounce_buffers(), c.buffers);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, EngineRoundTrip,
    ::testing::Combine(
        ::testing::Values(Case{true, 8 << 20, 1 << 20, 8, 8},
                          Case{false, 8 << 20, 1 << 20, 8, 8},
                          Case{true, (3 << 20) + 17, 256 << 10, 4, 2},
                          Case{false, 1, 1 << 20, 8, 8},
                          Case{false, 4096 * 5 + 4095, 8192, 16, 3},
                          Case{true, 12 << 20, 64 << 10, 1, 1}),
        ::testing::Values(1u, 2u, 3u, 4u)));

// A fill that fails in the middle of a pipeline (EIO from the source, or
// an exception) fails the write with that errno once everything in flight
// drained; no buffer stays taken, no worker is lost, and the next write on
// the same engine is exact.
TEST(UringEngine, FailingFillFailsTheWriteAndLeaksNothing) {
  for (unsigned threads : {1u, 2u, 3u, 4u}) {
    for (bool throws : {false, true}) {
      SCOPED_TRACE("copy_threads " + std::to_string(threads) +
                   (throws ? ", throws" : ", EIO"));
      TempFile file(32 << 20);
      auto dev = *BlockDevice::open(file.path(), {});
      EngineOptions o{256 * 1024, 8, 4};
      o.copy_threads = threads;
      auto eng = *UringEngine::create(dev, o);
      const uint64_t len = 8 << 20;
      AlignedBuffer data(len, 4096);
      fill_random(data.data(), len, 11);
      std::vector<DeviceExtent> ext = {{0, len}};
      BufferSource bad(data.data(), false);
      bad.fail_at = 5 * 1024 * 1024 + 4096;
      bad.throw_ = throws;
      auto st = eng->write(ext, len, bad);
      ASSERT_FALSE(st.ok());
      EXPECT_EQ(st.error().code, EIO);
      EXPECT_NE(st.error().what().find(throws ? "fill threw" : "fill failed"),
                std::string::npos)
          << st.error().what();
      EXPECT_LT(bad.observed_, len);
      EXPECT_EQ(eng->free_bounce_buffers(), 4u);
      BufferSource good(data.data(), false);
      auto ok = eng->write(ext, len, good);
      ASSERT_TRUE(ok.ok()) << ok.error().what();
      EXPECT_TRUE(good.covered_once(len));
      ASSERT_TRUE(eng->flush().ok());
      auto got = read_file(file.path(), 0, len);
      EXPECT_EQ(std::memcmp(got.data(), data.data(), len), 0);
      EXPECT_EQ(eng->free_bounce_buffers(), 4u);
    }
  }
}

// A sink that throws fails the read with EIO; the engine stays usable.
TEST(UringEngine, ThrowingSinkFailsTheRead) {
  TempFile file(8 << 20);
  auto dev = *BlockDevice::open(file.path(), {});
  auto eng = *UringEngine::create(dev, {1 << 20, 4, 4});
  std::vector<DeviceExtent> ext = {{0, 8 << 20}};
  auto r = eng->read(ext, 8 << 20,
                     [&](uint64_t off, const std::byte*, uint64_t) -> Status {
                       if (off == 2 << 20)
                         throw std::runtime_error("sink threw");
                       return {};
                     });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().what().find("sink threw"), std::string::npos);
  EXPECT_EQ(eng->free_bounce_buffers(), 4u);
  auto again = eng->read(
      ext, 8 << 20,
      [](uint64_t, const std::byte*, uint64_t) -> Status { return {}; });
  EXPECT_TRUE(again.ok());
}

TEST(UringEngine, RejectsCopyThreadsOutOfRange) {
  TempFile file(4 << 20);
  auto dev = *BlockDevice::open(file.path(), {});
  EngineOptions o;
  o.copy_threads = 0;
  EXPECT_EQ(UringEngine::create(dev, o).error().code, EINVAL);
  o.copy_threads = 65;
  EXPECT_EQ(UringEngine::create(dev, o).error().code, EINVAL);
}

TEST(UringEngine, SeveralJobsPipelineAndLandExactly) {
  TempFile file(64 << 20);
  auto dev = *BlockDevice::open(file.path(), {});
  auto eng = *UringEngine::create(dev, {64 * 1024, 8, 4});
  std::vector<AlignedBuffer> data;
  std::vector<std::vector<DeviceExtent>> ext;
  std::vector<std::unique_ptr<BufferSource>> src;
  std::vector<WriteJob> jobs;
  const uint64_t lens[] = {4096, 200 * 1024 + 3, 64 * 1024, 1};
  for (int i = 0; i < 4; ++i) {
    data.emplace_back(lens[i] + 4096, 4096);
    fill_random(data.back().data(), lens[i], 50 + i);
    ext.push_back({{static_cast<uint64_t>(i) * (1 << 20), 256 * 1024}});
  }
  for (int i = 0; i < 4; ++i) {
    src.push_back(std::make_unique<BufferSource>(data[i].data(), i % 2 == 0));
    jobs.push_back({ext[i], lens[i], src.back().get()});
  }
  auto st = eng->write(jobs);
  ASSERT_TRUE(st.ok()) << st.error().what();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(src[i]->observed_, lens[i]);
    auto got = read_file(file.path(), ext[i][0].offset_bytes, lens[i]);
    EXPECT_EQ(std::memcmp(got.data(), data[i].data(), lens[i]), 0) << "job " << i;
  }
}

TEST(UringEngine, NeighbouringJobsGatherIntoOneRequest) {
  TempFile file(64 << 20);
  auto dev = *BlockDevice::open(file.path(), {});
  auto eng = *UringEngine::create(dev, {256 * 1024, 8, 4});
  // Jobs side by side on the device (one with a padded tail), then a gap,
  // then two more side by side; one job in the first run allows direct
  // writes and so must not be gathered.
  const uint64_t lens[] = {64 * 1024, 4096 + 17,  64 * 1024, 64 * 1024,
                           64 * 1024, 200 * 1024, 32 * 1024};
  const bool direct[] = {false, false, false, true, false, false, false};
  const uint64_t starts[] = {0, 64, 72, 136, 200, 1024, 1224};  // KiB
  const size_t n = std::size(lens);
  std::vector<AlignedBuffer> data;
  std::vector<std::vector<DeviceExtent>> ext;
  std::vector<std::unique_ptr<BufferSource>> src;
  std::vector<WriteJob> jobs;
  for (size_t i = 0; i < n; ++i) {
    data.emplace_back(lens[i] + 4096, 4096);
    fill_random(data.back().data(), lens[i], 70 + i);
    const uint64_t aligned = (lens[i] + 4095) / 4096 * 4096;
    ext.push_back({{(8 << 20) + starts[i] * 1024, aligned}});
  }
  for (size_t i = 0; i < n; ++i) {
    src.push_back(std::make_unique<BufferSource>(data[i].data(), direct[i]));
    jobs.push_back({ext[i], lens[i], src.back().get()});
  }
  auto st = eng->write(jobs);
  ASSERT_TRUE(st.ok()) << st.error().what();
  ASSERT_TRUE(eng->flush().ok());
  // Requests: {0,1,2} gathered (136 KiB), {3} direct, {4} alone (a gap
  // follows), {5,6} gathered (232 KiB of the 256 KiB buffer).
  EXPECT_EQ(st->gathered, 3u);
  EXPECT_EQ(st->requests, 4u);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(src[i]->observed_, lens[i]);
    auto got = read_file(file.path(), ext[i][0].offset_bytes, lens[i]);
    EXPECT_EQ(std::memcmp(got.data(), data[i].data(), lens[i]), 0)
        << "job " << i;
  }
  // The padding of the unaligned job is zeros on the device.
  auto pad =
      read_file(file.path(), ext[1][0].offset_bytes + lens[1], 4096 - 17);
  EXPECT_EQ(std::count(pad.begin(), pad.end(), 0),
            static_cast<long>(pad.size()));
}

TEST(UringEngine, RejectsBadOptionsAndExtents) {
  TempFile file(4 << 20);
  auto dev = *BlockDevice::open(file.path(), {});
  EXPECT_EQ(UringEngine::create(dev, {1000, 8, 8}).error().code, EINVAL);
  EXPECT_EQ(UringEngine::create(dev, {1 << 20, 0, 8}).error().code, EINVAL);
  auto eng = *UringEngine::create(dev, {});
  AlignedBuffer data(8192, 4096);
  BufferSource src(data.data(), true);
  std::vector<DeviceExtent> too_short = {{0, 4096}};
  EXPECT_EQ(eng->write(too_short, 8192, src).error().code, EINVAL);
  std::vector<DeviceExtent> beyond = {{4 << 20, 8192}};
  EXPECT_EQ(eng->write(beyond, 8192, src).error().code, EINVAL);
  std::vector<DeviceExtent> unaligned = {{100, 8192}};
  EXPECT_EQ(eng->write(unaligned, 8192, src).error().code, EINVAL);
}

TEST(UringEngine, SinkErrorAbortsRead) {
  TempFile file(8 << 20);
  auto dev = *BlockDevice::open(file.path(), {});
  auto eng = *UringEngine::create(dev, {1 << 20, 4, 4});
  std::vector<DeviceExtent> ext = {{0, 8 << 20}};
  std::atomic<int> calls{0};
  auto r = eng->read(ext, 8 << 20,
                     [&](uint64_t off, const std::byte*, uint64_t) -> Status {
                       ++calls;
                       if (off == 2 << 20) return make_error(EUCLEAN, "stop");
                       return {};
                     });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EUCLEAN);
  // Reads already in flight may still reach their sinks, no new ones start:
  // 4 requests in flight at most past the failing one.
  EXPECT_GE(calls.load(), 1);
  EXPECT_LE(calls.load(), 3 + 4);
  EXPECT_EQ(eng->free_bounce_buffers(), 4u);
}

// A completion that no request of the engine's asked for (here a no-op
// tagged as a slot that is not in flight, then one far out of range) is an
// EIO, never credited to a slot or used as an index; the engine goes on.
TEST(UringEngine, StrayCompletionIsAnError) {
  TempFile file(8 << 20);
  auto dev = *BlockDevice::open(file.path(), {});
  auto eng = *UringEngine::create(dev, {64 * 1024, 4, 4});
  const uint64_t len = 512 * 1024;
  AlignedBuffer data(len, 4096);
  fill_random(data.data(), len, 5);
  std::vector<DeviceExtent> ext = {{1 << 20, len}};
  for (uint64_t tag :
       {uint64_t{0}, uint64_t{3}, uint64_t{1} << 40, UINT64_MAX - 1}) {
    SCOPED_TRACE("stray tag " + std::to_string(tag));
    ASSERT_TRUE(eng->inject_stray_completion_for_testing(tag).ok());
    BufferSource src(data.data(), false);
    auto st = eng->write(ext, len, src);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, EIO);
    EXPECT_NE(st.error().what().find("user_data"), std::string::npos)
        << st.error().what();
  }
  BufferSource src(data.data(), true);
  auto st = eng->write(ext, len, src);
  ASSERT_TRUE(st.ok()) << st.error().what();
  ASSERT_TRUE(eng->flush().ok());
  auto got = read_file(file.path(), 1 << 20, len);
  EXPECT_EQ(std::memcmp(got.data(), data.data(), len), 0);
}

// flush() reports the result of its own fsync: a completion that arrives
// first (a stray one here, a write's in the defect of issue 12) is an EIO,
// not the fsync's success; and the fsync's own completion is consumed, not
// left for the next operation to misread.
TEST(UringEngine, FlushTakesOnlyItsOwnCompletion) {
  TempFile file(8 << 20);
  auto dev = *BlockDevice::open(file.path(), {});
  auto eng = *UringEngine::create(dev, {64 * 1024, 4, 4});
  for (uint64_t tag : {uint64_t{0}, UINT64_MAX, uint64_t{77}}) {
    SCOPED_TRACE("stray tag " + std::to_string(tag));
    ASSERT_TRUE(eng->inject_stray_completion_for_testing(tag).ok());
    Status f = eng->flush();
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.error().code, EIO);
  }
  const uint64_t len = 256 * 1024;
  AlignedBuffer data(len, 4096);
  fill_random(data.data(), len, 6);
  std::vector<DeviceExtent> ext = {{0, len}};
  BufferSource src(data.data(), false);
  auto st = eng->write(ext, len, src);
  ASSERT_TRUE(st.ok()) << st.error().what();
  ASSERT_TRUE(eng->flush().ok());
  std::vector<uint8_t> back(len);
  auto rs = eng->read(
      ext, len, [&](uint64_t off, const std::byte* d, uint64_t n) -> Status {
        std::memcpy(back.data() + off, d, n);
        return {};
      });
  ASSERT_TRUE(rs.ok()) << rs.error().what();
  ASSERT_EQ(back.size(), len);
  EXPECT_EQ(std::memcmp(back.data(), data.data(), len), 0);
}

// The copy workers run every task once, hand back each id with its Status
// (an exception becomes ENOMEM or EIO naming it), wake the waiter through
// the eventfd, and on destruction run what is queued before joining.
TEST(CopyWorkers, RunEveryTaskOnceAndReportEach) {
  for (unsigned threads : {1u, 3u}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    std::atomic<int> ran{0};
    {
      auto w = *CopyWorkers::create(threads);
      EXPECT_EQ(w->threads(), threads);
      const int n = 500;
      for (int i = 0; i < n; ++i)
        w->post(static_cast<uint64_t>(i), [&ran, i]() -> Status {
          ++ran;
          if (i == 7) return make_error(EUCLEAN, "seven");
          if (i == 8) throw std::bad_alloc();
          if (i == 9) throw std::runtime_error("nine");
          return {};
        });
      std::vector<CopyWorkers::Done> done;
      while (done.size() < static_cast<size_t>(n)) {
        if (!w->has_done()) w->wait_event();
        w->take_done(done);
      }
      EXPECT_EQ(w->outstanding(), 0u);
      std::vector<int> seen(n, 0);
      for (const CopyWorkers::Done& d : done) {
        ASSERT_LT(d.id, static_cast<uint64_t>(n));
        ++seen[d.id];
        if (d.id == 7) {
          EXPECT_EQ(d.status.error().code, EUCLEAN);
        } else if (d.id == 8) {
          EXPECT_EQ(d.status.error().code, ENOMEM);
        } else if (d.id == 9) {
          EXPECT_EQ(d.status.error().code, EIO);
          EXPECT_NE(d.status.error().what().find("nine"), std::string::npos);
        } else {
          EXPECT_TRUE(d.status.ok()) << d.id;
        }
      }
      EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), n);
      // Queued at destruction: still run, then the workers are joined.
      for (int i = 0; i < 50; ++i)
        w->post(1000 + i, [&ran]() -> Status {
          ++ran;
          return {};
        });
    }
    EXPECT_EQ(ran.load(), 550);
  }
  EXPECT_EQ(CopyWorkers::create(0).error().code, EINVAL);
  EXPECT_EQ(CopyWorkers::create(65).error().code, EINVAL);
}

TEST(BlockDevice, ExclusiveOpenLocks) {
  TempFile file(1 << 20);
  auto a = BlockDevice::open(file.path(), {});
  ASSERT_TRUE(a.ok());
  auto b = BlockDevice::open(file.path(), {});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, EBUSY);
  BlockDevice::OpenOptions shared;
  shared.exclusive = false;
  shared.read_only = true;
  EXPECT_TRUE(BlockDevice::open(file.path(), shared).ok());
}

}  // namespace
}  // namespace pcimirror

namespace pcimirror {
namespace {

// A failed synchronous write keeps the kernel's errno (regression: every
// pwrite error came back as EPERM, errno = -(-1)). EFBIG from RLIMIT_FSIZE
// is a real failure this test can cause without a special device.
TEST(BlockDevice, SynchronousWriteErrorKeepsItsErrno) {
  testing::TempFile file(4 << 20);
  BlockDevice::OpenOptions o;
  o.exclusive = false;
  o.direct = false;
  auto dev = BlockDevice::open(file.path(), o);
  ASSERT_TRUE(dev.ok()) << dev.error().what();
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto prev = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 1 << 20;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  alignas(4096) static std::byte buf[4096];
  Status s = dev->pwrite_all(buf, sizeof buf, 2 << 20);
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, prev);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, EFBIG) << s.error().what();
}

}  // namespace
}  // namespace pcimirror
