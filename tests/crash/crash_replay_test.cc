// Crash-state replay (label `crash`). Each workload runs for real against a
// sparse file through a RecordingDevice, which logs every completed write
// (with data) and flush in completion order. From that log we rebuild the
// device as a crash may have left it:
//  - every state at a flush boundary,
//  - random subsets of the writes in flight after the last flush,
//  - torn writes: one in-flight request cut at a 512-byte boundary.
// Every state must load (or, while format runs, be cleanly "not a volume"),
// pass fsck --verify, and every slice's committed mirror must equal exactly
// the content of its last durable generation or of the one being committed,
// never a mix. PCIMIRROR_CRASH_STATES sets the budget (CI: 12,000).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include "../unit/test_util.h"
#include "fs/fsck.h"
#include "fs/mirror.h"
#include "fs/volume.h"
#include "io/recording_device.h"
#include "pcimap/file_region.h"

namespace pcimirror {
namespace {

using testing::fill_random;
using testing::TempFile;

constexpr uint64_t kDeviceBytes = 8 << 20;
constexpr uint64_t kRegionBytes = 2 << 20;

struct Generation {
  uint64_t gen;
  std::vector<uint8_t> content;
  size_t done_at_op;  // log size when sync() returned
};

struct Recorded {
  std::string name;
  std::vector<uint8_t> base;
  std::vector<RecordingDevice::Op> log;
  std::map<std::string, std::vector<Generation>> history;
  bool formats = false;
};

std::vector<SliceSpec> test_slices() {
  return {{"a", 0, 300 * 1024}, {"b", 512 * 1024, 64 * 1024 + 17},
          {"c", (1 << 20) + 3, 200 * 1024}};
}

FormatRequest format_request(uint32_t copies = 2) {
  FormatRequest req;
  req.mirror_copies = copies;
  req.memory_spec = "memfd=crash,size=2M";
  req.region_bytes = kRegionBytes;
  req.slices = test_slices();
  req.meta_slot_bytes = 64 * 1024;
  return req;
}

std::vector<uint8_t> read_all(const std::string& path) {
  return testing::read_file(path, 0, kDeviceBytes);
}

EngineOptions small_engine() { return EngineOptions{64 * 1024, 4, 4}; }

// The device image of a volume made by the release before stable slice
// IDs (tests/fixtures/make_v1_fixture.sh), decompressed into `path`.
void write_v1_fixture(const std::string& path) {
  const std::string cmd = std::string("xz -dc ") + PCIMIRROR_FIXTURES_DIR +
                          "/v1-volume.img.xz > " + path;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// Runs `body` against a fresh (or, unless `formats`, freshly formatted, or
// with `v1_fixture` the old release's) device with a recorder attached, and
// returns the log.
Recorded record(
    const std::string& name, bool formats,
    const std::function<void(BlockDevice, RecordingDevice&, Recorded&)>& body,
    bool v1_fixture = false, uint32_t copies = 2) {
  TempFile file(kDeviceBytes);
  Recorded rec;
  rec.name = name;
  rec.formats = formats;
  if (v1_fixture) {
    write_v1_fixture(file.path());
  } else if (!formats) {
    auto dev = *BlockDevice::open(file.path(), {});
    auto plan = *Volume::plan_format(dev, format_request(copies));
    EXPECT_TRUE(Volume::write_format(std::move(dev), plan.first, plan.second).ok());
  }
  rec.base = read_all(file.path());
  RecordingDevice recorder;
  auto dev = *BlockDevice::open(file.path(), {});
  dev.set_observer(&recorder);
  body(std::move(dev), recorder, rec);
  rec.log = recorder.log();
  return rec;
}

// Syncs `slice` with fresh content and notes the generation in `rec`.
void sync_with_content(MirrorEngine& eng, Region& region, RecordingDevice& r,
                       Recorded& rec, const std::string& slice, uint64_t seed,
                       std::mutex* mu = nullptr) {
  SliceEntry e;
  for (const auto& s : eng.table().slices)
    if (s.name == slice) e = s;
  fill_random(region.base() + e.offset_bytes, e.length_bytes, seed);
  std::vector<uint8_t> content(
      reinterpret_cast<uint8_t*>(region.base()) + e.offset_bytes,
      reinterpret_cast<uint8_t*>(region.base()) + e.offset_bytes + e.length_bytes);
  auto rep = eng.sync(testing::slice_id(eng.table(), slice));
  ASSERT_TRUE(rep.ok()) << rep.error().what();
  std::unique_lock<std::mutex> lock;
  if (mu) lock = std::unique_lock(*mu);
  rec.history[slice].push_back({rep->generation, std::move(content), r.log().size()});
}

std::vector<Recorded> record_workloads() {
  std::vector<Recorded> out;
  out.push_back(record("format", true, [](BlockDevice dev, RecordingDevice&, Recorded&) {
    auto plan = *Volume::plan_format(dev, format_request());
    ASSERT_TRUE(Volume::write_format(std::move(dev), plan.first, plan.second).ok());
  }));
  auto with_engine = [](const std::function<void(MirrorEngine&, Region&,
                                                 RecordingDevice&, Recorded&)>& f) {
    return [f](BlockDevice dev, RecordingDevice& r, Recorded& rec) {
      auto vol = *Volume::load(std::move(dev));
      auto region = *FileRegion::create_memfd("crash", kRegionBytes);
      MirrorOptions mo;
      mo.engine = small_engine();
      auto eng = *MirrorEngine::create(vol, *region, mo);
      f(*eng, *region, r, rec);
    };
  };
  out.push_back(record("sync one slice", false,
      with_engine([](MirrorEngine& e, Region& g, RecordingDevice& r, Recorded& rec) {
        for (int i = 0; i < 3; ++i) sync_with_content(e, g, r, rec, "a", 100 + i);
      })));
  // A history of generations (format --copies 3, docs/FORMAT.md §7): the
  // fourth and fifth syncs of a overwrite its oldest copies; every crash
  // state keeps the older generations intact (fsck verifies each copy).
  out.push_back(record("sync with --copies 3", false,
                       with_engine([](MirrorEngine& e, Region& g,
                                      RecordingDevice& r, Recorded& rec) {
                         for (int i = 0; i < 5; ++i)
                           sync_with_content(e, g, r, rec, "a", 900 + i);
                         sync_with_content(e, g, r, rec, "b", 910);
                       }),
                       /*v1_fixture=*/false, /*copies=*/3));
  out.push_back(record("alternating syncs", false,
      with_engine([](MirrorEngine& e, Region& g, RecordingDevice& r, Recorded& rec) {
        const char* order[] = {"a", "b", "c", "b", "a", "c", "a"};
        int i = 0;
        for (const char* s : order) sync_with_content(e, g, r, rec, s, 200 + i++);
      })));
  out.push_back(record("sync during another sync", false,
      with_engine([](MirrorEngine& e, Region& g, RecordingDevice& r, Recorded& rec) {
        std::mutex mu;
        std::thread t1([&] {
          for (int i = 0; i < 2; ++i) sync_with_content(e, g, r, rec, "a", 300 + i, &mu);
        });
        std::thread t2([&] {
          for (int i = 0; i < 2; ++i) sync_with_content(e, g, r, rec, "c", 400 + i, &mu);
        });
        t1.join();
        t2.join();
      })));
  out.push_back(record("group commit of three slices", false,
      with_engine([](MirrorEngine& e, Region& g, RecordingDevice& r, Recorded& rec) {
        for (int round = 0; round < 2; ++round) {
          std::map<std::string, std::vector<uint8_t>> contents;
          for (const auto& s : e.table().slices) {
            fill_random(g.base() + s.offset_bytes, s.length_bytes, 600 + round * 10 + s.name[0]);
            contents[s.name].assign(
                reinterpret_cast<uint8_t*>(g.base()) + s.offset_bytes,
                reinterpret_cast<uint8_t*>(g.base()) + s.offset_bytes + s.length_bytes);
          }
          auto reps =
              e.sync_batch(testing::slice_ids(e.table(), {"a", "b", "c"}));
          ASSERT_TRUE(reps.ok()) << reps.error().what();
          for (const auto& rep : *reps)
            rec.history[rep.slice].push_back(
                {rep.generation, std::move(contents[rep.slice]), r.log().size()});
        }
      })));
  out.push_back(record(
      "write-behind, then commit", false,
      with_engine([](MirrorEngine& e, Region& g, RecordingDevice& r,
                     Recorded& rec) {
        const SliceEntry a = e.table().slices[0];
        auto* mem = reinterpret_cast<uint8_t*>(g.base()) + a.offset_bytes;
        for (int round = 0; round < 3; ++round) {
          fill_random(g.base() + a.offset_bytes, a.length_bytes, 700 + round);
          WriteBehind wb;
          ASSERT_TRUE(
              e.write_behind(testing::slice_id(e.table(), "a"), 0, 1, wb).ok());
          if (round ==
              1) {  // written again after write-behind, as SliceFs marks it
            fill_random(g.base() + a.offset_bytes, a.length_bytes, 750);
            wb.written[0] = 0;
          }
          std::vector<uint8_t> content(mem, mem + a.length_bytes);
          auto rep = e.sync(testing::slice_id(e.table(), "a"), {}, {}, &wb);
          ASSERT_TRUE(rep.ok()) << rep.error().what();
          EXPECT_EQ(rep->behind_bytes, round == 1 ? 0u : a.length_bytes);
          rec.history["a"].push_back(
              {rep->generation, std::move(content), r.log().size()});
        }
      })));
  // The upgrade of a volume from before slice IDs (docs/FORMAT.md §9): one
  // commit of the unchanged table as a version-2 slot, then two syncs.
  // Every crash state must load with the old release's mirrors intact.
  out.push_back(record(
      "upgrade to slice IDs, then sync", false,
      [](BlockDevice dev, RecordingDevice& r, Recorded& rec) {
        auto vol = Volume::load(std::move(dev));
        ASSERT_TRUE(vol.ok()) << vol.error().what();
        ASSERT_TRUE(vol->needs_upgrade());
        auto region = *FileRegion::create_memfd("crash", kRegionBytes);
        MirrorOptions mo;
        mo.engine = small_engine();
        {
          // What the old release mirrored, as restore reads it (verified).
          auto eng = *MirrorEngine::create(*vol, *region, mo);
          for (const SliceEntry& e : vol->table().slices) {
            auto rr = eng->restore(e.id);
            ASSERT_TRUE(rr.ok()) << rr.error().what();
            auto* mem =
                reinterpret_cast<uint8_t*>(region->base()) + e.offset_bytes;
            rec.history[e.name].push_back(
                {e.generation(),
                 std::vector<uint8_t>(mem, mem + e.length_bytes), 0});
          }
        }
        ASSERT_EQ(r.log().size(), 0u);  // reading wrote nothing
        auto up = vol->upgrade();
        ASSERT_TRUE(up.ok() && *up)
            << (up.ok() ? "no upgrade" : up.error().what());
        ASSERT_FALSE(vol->needs_upgrade());
        auto eng = *MirrorEngine::create(*vol, *region, mo);
        sync_with_content(*eng, *region, r, rec, "bee", 800);
        sync_with_content(*eng, *region, r, rec, "a", 801);
      },
      /*v1_fixture=*/true));
  out.push_back(record("metadata-only commit and restore", false,
      with_engine([](MirrorEngine& e, Region& g, RecordingDevice& r, Recorded& rec) {
        sync_with_content(e, g, r, rec, "b", 500);
        ASSERT_TRUE(e.commit_edit([](SliceTable& t) -> Status {
          t.slices[0].mode = 0600;
          return {};
        }).ok());
        std::memset(g.base(), 0, kRegionBytes);
        ASSERT_TRUE(e.restore(testing::slice_id(e.table(), "b")).ok());
        sync_with_content(e, g, r, rec, "b", 501);
      })));
  return out;
}

// An in-memory image of the device, exposed as a memfd path for BlockDevice.
class Image {
 public:
  explicit Image(const std::vector<uint8_t>& base) {
    fd_ = ::memfd_create("crash-image", MFD_CLOEXEC);
    EXPECT_GE(fd_, 0);
    EXPECT_EQ(::pwrite(fd_, base.data(), base.size(), 0),
              static_cast<ssize_t>(base.size()));
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~Image() { ::close(fd_); }
  // Writes `data[0, n)` at `off`, returning what was there before.
  std::vector<uint8_t> apply(uint64_t off, const std::byte* data, size_t n) {
    std::vector<uint8_t> old(n);
    EXPECT_EQ(::pread(fd_, old.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
    EXPECT_EQ(::pwrite(fd_, data, n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
    return old;
  }
  void put(uint64_t off, const std::vector<uint8_t>& bytes) {
    EXPECT_EQ(::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(off)),
              static_cast<ssize_t>(bytes.size()));
  }
  std::vector<uint8_t> read(uint64_t off, size_t n) const {
    std::vector<uint8_t> out(n);
    EXPECT_EQ(::pread(fd_, out.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
    return out;
  }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

BlockDevice open_image(const Image& img) {
  BlockDevice::OpenOptions o;
  o.exclusive = false;
  o.direct = false;  // a memfd; the page cache is the device here
  auto d = BlockDevice::open(img.path(), o);
  EXPECT_TRUE(d.ok()) << d.error().what();
  return std::move(d).value();
}

// Checks one crash state. `durable_flush` is the log index of the last flush
// whose effects the state includes fully (-1: none).
std::string check_state(const Recorded& rec, const Image& img, long durable_flush) {
  auto vol = Volume::load(open_image(img));
  if (!vol.ok()) {
    if (rec.formats && vol.error().code == EINVAL &&
        vol.error().message.find("no pcimirror volume") != std::string::npos)
      return "";  // format had not yet written its superblock: not a volume
    return "load: " + vol.error().what();
  }
  FsckOptions fo;
  fo.verify = true;
  fo.engine = small_engine();
  auto rep = run_fsck(open_image(img), fo);
  if (!rep.ok()) return "fsck: " + rep.error().what();
  if (rep->exit_code() != 0) {
    std::string m = "fsck exit " + std::to_string(rep->exit_code()) + ":";
    for (auto& f : rep->findings) m += " [" + f.message + "]";
    return m;
  }
  for (const SliceEntry& e : vol->table().slices) {
    const auto it = rec.history.find(e.name);
    const std::vector<Generation> none;
    const auto& hist = it == rec.history.end() ? none : it->second;
    uint64_t durable = 0;
    for (const auto& g : hist)
      if (static_cast<long>(g.done_at_op) - 1 <= durable_flush) durable = g.gen;
    const uint64_t got = e.generation();
    if (got != durable && got != durable + 1)
      return "slice " + e.name + " at generation " + std::to_string(got) +
             ", durable was " + std::to_string(durable);
    const MirrorCopy* c = e.committed();
    if (!c) continue;
    const Generation* want = nullptr;
    for (const auto& g : hist)
      if (g.gen == c->generation) want = &g;
    if (!want) return "slice " + e.name + ": no content known for generation " +
                      std::to_string(c->generation);
    std::vector<uint8_t> disk;
    for (const Extent& x : c->extents) {
      auto part = img.read(x.start_sector * 512, x.sectors * 512);
      disk.insert(disk.end(), part.begin(), part.end());
    }
    disk.resize(e.length_bytes);
    if (disk != want->content)
      return "slice " + e.name + " generation " + std::to_string(c->generation) +
             ": mirror differs from what was committed";
  }
  return "";
}

struct Totals {
  size_t states = 0, failures = 0;
};

void replay(const Recorded& rec, size_t samples_per_boundary, std::mt19937_64& rng,
            Totals& totals) {
  Image img(rec.base);
  const auto& log = rec.log;
  long last_flush = -1;
  size_t i = 0;
  auto fail_if = [&](const std::string& why, const std::string& state) {
    ++totals.states;
    if (why.empty()) return;
    ++totals.failures;
    if (totals.failures <= 5)
      ADD_FAILURE() << rec.name << ", " << state << ": " << why;
  };
  while (true) {
    // Writes in flight after the last flush: [i, j).
    size_t j = i;
    while (j < log.size() && log[j].kind == RecordingDevice::Op::kWrite) ++j;
    fail_if(check_state(rec, img, last_flush), "flush boundary at op " + std::to_string(i));
    const size_t n = j - i;
    for (size_t s = 0; n > 0 && s < samples_per_boundary; ++s) {
      // A random subset, and with probability 1/2 one torn member.
      std::vector<std::pair<uint64_t, std::vector<uint8_t>>> undo;
      size_t torn = (rng() & 1) ? rng() % n : n;
      std::string desc = "in flight after op " + std::to_string(i) + ":";
      for (size_t k = 0; k < n; ++k) {
        const auto& op = log[i + k];
        if (k == torn) {
          size_t sectors = op.data.size() / 512;
          size_t keep = sectors > 1 ? 512 * (1 + rng() % (sectors - 1)) : 0;
          if (keep) undo.emplace_back(op.offset_bytes, img.apply(op.offset_bytes, op.data.data(), keep));
          desc += " torn(" + std::to_string(k) + "," + std::to_string(keep) + ")";
        } else if (rng() & 1) {
          undo.emplace_back(op.offset_bytes,
                            img.apply(op.offset_bytes, op.data.data(), op.data.size()));
          desc += " " + std::to_string(k);
        }
      }
      fail_if(check_state(rec, img, last_flush), desc);
      for (auto it = undo.rbegin(); it != undo.rend(); ++it) img.put(it->first, it->second);
    }
    for (size_t k = i; k < j; ++k)
      img.apply(log[k].offset_bytes, log[k].data.data(), log[k].data.size());
    if (j >= log.size()) break;
    last_flush = static_cast<long>(j);  // log[j] is a flush
    i = j + 1;
  }
  // The final state, with every write applied.
  fail_if(check_state(rec, img, static_cast<long>(log.size())), "end");
}

TEST(CrashReplay, EveryStateMountsPassesFsckAndHoldsACommittedMirror) {
  const char* env = std::getenv("PCIMIRROR_CRASH_STATES");
  const size_t budget = env ? std::stoull(env) : 12000;
  auto workloads = record_workloads();
  // Boundaries with writes in flight after them get the random samples.
  size_t boundaries = 0;
  for (const auto& w : workloads) {
    ASSERT_FALSE(w.log.empty()) << w.name;
    for (size_t i = 0; i < w.log.size(); ++i)
      if (w.log[i].kind == RecordingDevice::Op::kWrite &&
          (i == 0 || w.log[i - 1].kind == RecordingDevice::Op::kFlush))
        ++boundaries;
  }
  const size_t samples = budget / boundaries + 1;
  std::mt19937_64 rng(42);
  Totals totals;
  for (const auto& w : workloads) {
    Totals t;
    replay(w, samples, rng, t);
    std::printf("workload %-34s %6zu log ops, %7zu crash states, %zu failures\n",
                w.name.c_str(), w.log.size(), t.states, t.failures);
    totals.states += t.states;
    totals.failures += t.failures;
  }
  std::printf("crash states checked: %zu, failures: %zu\n", totals.states, totals.failures);
  EXPECT_GE(totals.states, budget);
  EXPECT_EQ(totals.failures, 0u);
}

}  // namespace
}  // namespace pcimirror
