#include "fs/mirror.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <unordered_map>

#include "fs/crc32c.h"
#include "fs/slice_table.h"
#include "io/log.h"
#include "io/units.h"

namespace pcimirror {
namespace {

uint64_t mono_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// The per-chunk CRC32Cs (§5) of a run of a slice that starts at a chunk
// boundary, from pieces observed in any order, concurrently, on the copy
// workers: each piece's part of each chunk is checksummed where it is
// observed, and finish() combines the parts of each chunk in order
// (crc32c_combine), so the data is checksummed once and on the workers.
// The whole-slice CRC is combined from the chunk CRCs (crc32c_of_chunks).
// feed() is thread-safe; finish() runs once every feed() returned.
class ChunkCrcs {
 public:
  ChunkCrcs(uint32_t chunk_bytes, uint64_t run_bytes)
      : chunk_bytes_(chunk_bytes), run_bytes_(run_bytes) {}
  void feed(uint64_t run_offset, const std::byte* data, uint64_t n)
      EXCLUDES(mu_) {
    Part local[4];
    std::vector<Part> more;
    size_t count = 0;
    while (n > 0) {
      const uint64_t in_chunk = run_offset % chunk_bytes_;
      const uint64_t take = std::min<uint64_t>(n, chunk_bytes_ - in_chunk);
      const Part p{run_offset, take, crc32c(data, take)};
      if (count < 4)
        local[count++] = p;
      else
        more.push_back(p);
      run_offset += take;
      data += take;
      n -= take;
    }
    MutexLock lock(mu_);
    parts_.insert(parts_.end(), local, local + count);
    parts_.insert(parts_.end(), more.begin(), more.end());
  }
  // The chunk CRCs, or EIO when the parts fed do not cover the run exactly
  // once (an engine bug: a chunk not observed, or observed twice).
  Result<std::vector<uint32_t>> finish() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    std::sort(parts_.begin(), parts_.end(),
              [](const Part& a, const Part& b) { return a.offset < b.offset; });
    std::vector<uint32_t> out;
    out.reserve(chunk_count(run_bytes_, chunk_bytes_));
    uint64_t pos = 0;
    for (const Part& p : parts_) {
      if (p.offset != pos) break;
      if (pos % chunk_bytes_ == 0)
        out.push_back(p.crc);
      else
        out.back() = crc32c_combine(out.back(), p.crc, p.length);
      pos += p.length;
    }
    if (pos != run_bytes_)
      return make_error(EIO, "internal error: the copy stage checksummed " +
                                 std::to_string(pos) + " contiguous bytes of " +
                                 std::to_string(run_bytes_));
    return out;
  }

 private:
  struct Part {
    uint64_t offset = 0;  // in the run
    uint64_t length = 0;  // within one chunk
    uint32_t crc = 0;
  };
  const uint64_t chunk_bytes_;
  const uint64_t run_bytes_;
  Mutex mu_;
  std::vector<Part> parts_ GUARDED_BY(mu_);
};

// Progress of one copy (all its runs): bytes handed to the device, reported
// from the copy workers one call at a time.
struct CopyProgress {
  Mutex mu;
  uint64_t done_bytes GUARDED_BY(mu) = 0;
  std::function<void(uint64_t)> progress;  // set before the write starts
  void add(uint64_t n) EXCLUDES(mu) {
    MutexLock lock(mu);
    done_bytes += n;
    if (progress) progress(done_bytes);
  }
};

// The source of one run of a slice: region memory from `offset_bytes` on.
// fill() and observe() run on the copy workers, concurrently.
class RegionSource final : public WriteSource {
 public:
  RegionSource(Region& region, uint64_t offset_bytes, bool zero_copy,
               ChunkCrcs& crc, CopyProgress& progress)
      : region_(region),
        offset_(offset_bytes),
        zero_copy_(zero_copy),
        crc_(crc),
        progress_(progress) {}
  const std::byte* direct(uint64_t mirror_offset, uint64_t) override {
    return zero_copy_ ? region_.base() + offset_ + mirror_offset : nullptr;
  }
  Status fill(uint64_t mirror_offset, std::byte* dst, uint64_t n) override {
    // A failed copy (a DMA error) fails the write: nothing is committed.
    PCIM_TRY(region_.copy_from(offset_ + mirror_offset, dst, n));
    bounced_.fetch_add(n, std::memory_order_relaxed);
    return {};
  }
  uint64_t bounced_bytes() const {
    return bounced_.load(std::memory_order_relaxed);
  }
  void observe(uint64_t mirror_offset, const std::byte* data,
               uint64_t n) override {
    crc_.feed(mirror_offset, data, n);
    progress_.add(n);
  }

 private:
  Region& region_;
  uint64_t offset_;
  bool zero_copy_;
  ChunkCrcs& crc_;
  CopyProgress& progress_;
  // Summed by the workers; read once the write returned.
  std::atomic<uint64_t> bounced_{0};
};

// Hands each CRC chunk of a slice (docs/FORMAT.md §5) whole to `on_chunk`,
// from read pieces that come in any order on the copy workers. A chunk
// that one piece holds whole is handed over in place; one split across
// pieces (at a device extent, or io_size below crc_chunk_bytes) is staged
// in a buffer of its own, and handed over by the worker that completes it.
// Staging is bounded by the reads in flight (each touches at most two
// split chunks). feed() is thread-safe; on_chunk runs on the feeding
// worker, without the lock.
class ChunkAssembler {
 public:
  using OnChunk =
      std::function<Status(uint64_t chunk, const std::byte* data, uint64_t n)>;
  ChunkAssembler(uint64_t chunk_bytes, uint64_t length_bytes, OnChunk on_chunk)
      : chunk_bytes_(chunk_bytes),
        length_bytes_(length_bytes),
        on_chunk_(std::move(on_chunk)) {}

  Status feed(uint64_t off, const std::byte* data, uint64_t n) EXCLUDES(mu_) {
    for (uint64_t done = 0; done < n;) {
      const uint64_t pos = off + done, k = pos / chunk_bytes_;
      const uint64_t start = k * chunk_bytes_;
      const uint64_t end = std::min(start + chunk_bytes_, length_bytes_);
      const uint64_t take = std::min(n - done, end - pos);
      if (pos == start && take == end - start) {
        PCIM_TRY(on_chunk_(k, data + done, take));
      } else {
        Staged* st = nullptr;
        {
          MutexLock lock(mu_);
          auto [it, fresh] = staged_.try_emplace(k);
          if (fresh) it->second.bytes.reset(new std::byte[end - start]);
          st = &it->second;
        }
        // Pieces fill disjoint bytes; the entry stays until it is complete.
        std::memcpy(st->bytes.get() + (pos - start), data + done, take);
        std::unique_ptr<std::byte[]> whole;
        {
          MutexLock lock(mu_);
          st->have += take;
          if (st->have == end - start) {
            whole = std::move(st->bytes);
            staged_.erase(k);
          }
        }
        if (whole) PCIM_TRY(on_chunk_(k, whole.get(), end - start));
      }
      done += take;
    }
    return {};
  }

 private:
  struct Staged {
    std::unique_ptr<std::byte[]> bytes;
    uint64_t have = 0;
  };
  const uint64_t chunk_bytes_;
  const uint64_t length_bytes_;
  const OnChunk on_chunk_;
  Mutex mu_;
  std::unordered_map<uint64_t, Staged> staged_ GUARDED_BY(mu_);
};

// The lowest failing chunk of a read whose chunks are checked on the copy
// workers, and its error: the engine reports the failing piece with the
// lowest offset, and a staged chunk fails in the piece that completes it,
// so the error is named here from the lowest bad chunk.
struct BadChunk {
  Mutex mu;
  std::optional<uint64_t> chunk GUARDED_BY(mu);
  Status mismatch(uint64_t k) EXCLUDES(mu) {
    MutexLock lock(mu);
    if (!chunk || k < *chunk) chunk = k;
    return make_error(EUCLEAN,
                      "chunk " + std::to_string(k) + " fails its CRC32C");
  }
  std::optional<uint64_t> get() EXCLUDES(mu) {
    MutexLock lock(mu);
    return chunk;
  }
};

// Slice `id` in `t`, or ENOENT (a slice removed meanwhile, or never there).
Result<const SliceEntry*> find_slice(const SliceTable& t, uint64_t id) {
  if (const SliceEntry* e = t.find_id(id)) return e;
  return make_error(ENOENT, "no slice with ID " + std::to_string(id) +
                                " (removed meanwhile?)");
}

// The device extents of mirror bytes [start_bytes, start_bytes + length_bytes)
// of copy `c`; by default all of them.
std::vector<DeviceExtent> device_extents(const MirrorCopy& c,
                                         uint64_t start_bytes = 0,
                                         uint64_t length_bytes = UINT64_MAX) {
  std::vector<DeviceExtent> out;
  uint64_t pos = 0;  // mirror offset of the extent's first byte
  for (const Extent& x : c.extents) {
    const uint64_t len = x.sectors * kSectorBytes;
    if (length_bytes > 0 && start_bytes < pos + len) {
      const uint64_t skip = start_bytes - pos;
      const uint64_t take = std::min(len - skip, length_bytes);
      out.push_back({x.start_sector * kSectorBytes + skip, take});
      start_bytes += take;
      length_bytes -= take;
    }
    pos += len;
  }
  return out;
}

// Runs [first, end) of chunks still to write: all of them, or those that
// write-behind has not written.
std::vector<std::pair<uint64_t, uint64_t>> runs_to_write(
    uint64_t chunks, const WriteBehind* wb) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (uint64_t k = 0; k < chunks;) {
    if (wb && wb->written[k]) {
      ++k;
      continue;
    }
    uint64_t end = k + 1;
    while (end < chunks && !(wb && wb->written[end])) ++end;
    runs.emplace_back(k, end);
    k = end;
  }
  return runs;
}

}  // namespace

Result<RestoreVerify> parse_restore_verify(const std::string& text) {
  if (text == "prepass") return RestoreVerify::kPrepass;
  if (text == "inline") return RestoreVerify::kInline;
  if (text == "auto") return RestoreVerify::kAuto;
  return make_error(
      EINVAL, "restore_verify='" + text + "': use auto, prepass or inline");
}

Result<BounceMode> parse_bounce_mode(const std::string& text) {
  if (text == "auto") return BounceMode::kAuto;
  if (text == "always") return BounceMode::kAlways;
  if (text == "never") return BounceMode::kNever;
  return make_error(EINVAL, "bounce='" + text + "': use auto, always or never");
}

const char* to_string(BounceMode m) {
  switch (m) {
    case BounceMode::kAuto: return "auto";
    case BounceMode::kAlways: return "always";
    case BounceMode::kNever: return "never";
  }
  return "?";
}

MirrorEngine::MirrorEngine(Volume& volume, Region& region,
                           MirrorOptions options,
                           std::unique_ptr<UringEngine> engine)
    : volume_(volume),
      region_(region),
      options_(options),
      guard_(volume.superblock(), region),
      canary_(volume.table().canary),
      engine_(std::move(engine)) {}
MirrorEngine::~MirrorEngine() = default;

Status check_region_identity(const Superblock& sb, const Region& region,
                             bool ignore_device_id) {
  if (ignore_device_id || region.pci_vendor_id() == 0 || sb.pci_vendor_id == 0)
    return {};
  char want[16], have[16];
  std::snprintf(want, sizeof want, "%04x:%04x", sb.pci_vendor_id, sb.pci_device_id);
  std::snprintf(have, sizeof have, "%04x:%04x", region.pci_vendor_id(),
                region.pci_device_id());
  if (region.pci_vendor_id() != sb.pci_vendor_id ||
      region.pci_device_id() != sb.pci_device_id)
    return make_error(EINVAL, "memory " + region.name() + " is PCI device " +
                                  have + ", but the volume was formatted for " +
                                  want +
                                  "; check the pci= or vendor=/device= "
                                  "option, or mount with ignore_device_id");
  if (region.bar_bytes() < sb.pci_bar_bytes)
    return make_error(EINVAL, "memory " + region.name() + " has a BAR of " +
                                  std::to_string(region.bar_bytes()) +
                                  " bytes, smaller than the " +
                                  std::to_string(sb.pci_bar_bytes) +
                                  " recorded at format; mount with "
                                  "ignore_device_id to accept it");
  return {};
}

Result<std::unique_ptr<MirrorEngine>> MirrorEngine::create(
    Volume& volume, Region& region, MirrorOptions options) {
  const Superblock& sb = volume.superblock();
  PCIM_TRY(check_region_identity(sb, region, options.ignore_device_id));
  for (const SliceEntry& e : volume.table().slices)
    if (!region.contains(e.offset_bytes, e.length_bytes))
      return make_error(EINVAL, "memory region " + region.name() + " holds " +
                                    std::to_string(region.size_bytes()) +
                                    " bytes, too few for slice '" + e.name +
                                    "' [" + std::to_string(e.offset_bytes) +
                                    ", +" + std::to_string(e.length_bytes) +
                                    "); the volume was formatted for " +
                                    std::to_string(sb.region_bytes) + " bytes");
  if (options.bounce == BounceMode::kNever && !region.pages_pinnable())
    return make_error(EINVAL, "bounce=never: the pages of " + region.name() +
                                  " cannot be pinned for O_DIRECT; use "
                                  "bounce=auto");
  PCIM_ASSIGN_OR_RETURN(auto engine,
                        UringEngine::create(volume.device(), options.engine));
  return std::unique_ptr<MirrorEngine>(
      new MirrorEngine(volume, region, options, std::move(engine)));
}

uint64_t MirrorEngine::prefault_windows() {
  std::vector<std::pair<uint64_t, uint64_t>> windows;
  {
    auto lock = lock_ahead_of_write_behind();
    for (const SliceEntry& e : volume_.table().slices)
      windows.emplace_back(e.offset_bytes, e.length_bytes);
  }
  // Without the lock: a page-table walk of the region, no I/O to the
  // volume; a slice removed meanwhile only had its pages mapped.
  uint64_t bytes = 0;
  for (auto [off, len] : windows) {
    region_.prefault_for_read(off, len);
    bytes += len;
  }
  return bytes;
}

std::unique_lock<Mutex> MirrorEngine::lock_ahead_of_write_behind() const {
  waiting_.fetch_add(1, std::memory_order_acq_rel);
  std::unique_lock lock(mu_);
  waiting_.fetch_sub(1, std::memory_order_acq_rel);
  return lock;
}

SliceTable MirrorEngine::table() const {
  auto lock = lock_ahead_of_write_behind();
  return volume_.table();
}

Status MirrorEngine::commit_edit(
    const std::function<Status(SliceTable&)>& edit) {
  auto lock = lock_ahead_of_write_behind();
  SliceTable next = volume_.table();
  PCIM_TRY(edit(next));
  return volume_.commit(std::move(next));
}

Status MirrorEngine::check_memory_locked(const std::string& what) {
  const auto& canary = volume_.table().canary;
  return guard_.check(canary ? &*canary : nullptr, what);
}

Status MirrorEngine::check_memory(const std::string& what) {
  std::optional<CanaryRecord> canary;
  {
    MutexLock lock(canary_mu_);
    canary = canary_;
  }
  return guard_.check(canary ? &*canary : nullptr, what);
}

Status MirrorEngine::renew_canary(const std::string& why) {
  auto lock = lock_ahead_of_write_behind();
  PCIM_TRY(guard_.check_device("before writing a new canary"));
  const SliceTable& t = volume_.table();
  if (!t.canary) {
    guard_.reset_to_ok(why);
    return {};
  }
  PCIM_ASSIGN_OR_RETURN(CanaryRecord c, fresh_canary(t.canary->offset_bytes));
  PCIM_TRY(guard_.write_canary(c));
  SliceTable next = t;
  next.canary = c;
  PCIM_TRY(volume_.commit(std::move(next)));
  {
    MutexLock snapshot(canary_mu_);
    canary_ = c;
  }
  guard_.reset_to_ok(why + "; new canary nonce committed");
  return {};
}

Status MirrorEngine::set_canary(uint64_t offset_bytes) {
  auto lock = lock_ahead_of_write_behind();
  // An existing canary is compared first: a new nonce over reset memory
  // would erase the only evidence of the reset.
  if (Status m = check_memory_locked("before claiming a canary"); !m.ok()) {
    if (guard_.state() != MemoryState::kMemoryReset) return m;
    return make_error(EBUSY, "cannot move the canary: " + m.error().message);
  }
  PCIM_TRY(check_canary_window(offset_bytes, volume_.superblock().region_bytes,
                               volume_.table()));
  if (!region_.contains(offset_bytes, kCanaryBytes))
    return make_error(EINVAL, "the canary at byte " +
                                  std::to_string(offset_bytes) +
                                  " lies beyond " + region_.name());
  PCIM_ASSIGN_OR_RETURN(CanaryRecord c, fresh_canary(offset_bytes));
  PCIM_TRY(guard_.write_canary(c));
  SliceTable next = volume_.table();
  next.canary = c;
  PCIM_TRY(volume_.commit(std::move(next)));
  {
    MutexLock snapshot(canary_mu_);
    canary_ = c;
  }
  guard_.reset_to_ok("canary claimed at byte " + std::to_string(offset_bytes));
  return {};
}

bool WriteBehind::matches(const SliceEntry& e, uint32_t crc_chunk_bytes) const {
  if (e.id != slice_id) return false;
  return active() && e.copies.size() > 1 && target_copy == e.next_copy() &&
         generation == e.generation() + 1 &&
         written.size() == chunk_count(e.length_bytes, crc_chunk_bytes) &&
         chunk_crc32c.size() == written.size();
}

uint64_t WriteBehind::written_bytes(uint64_t length_bytes,
                                    uint32_t crc_chunk_bytes) const {
  uint64_t n = 0;
  for (size_t k = 0; k < written.size(); ++k)
    if (written[k])
      n += std::min<uint64_t>(crc_chunk_bytes,
                              length_bytes - k * crc_chunk_bytes);
  return n;
}

Result<std::vector<MirrorEngine::RunResult>> MirrorEngine::write_runs(
    std::span<const CopyRequest> reqs, std::span<const Run> runs) {
  // The measured rule for bounce=auto (docs/DESIGN.md, "Choosing the
  // path"): the registered, pre-faulted, reused bounce pool outran zero-copy
  // from the region on every machine measured, for syncs and write-behind
  // alike, so auto bounces; zero-copy is bounce=never, and only from pages
  // that can be pinned.
  const bool zero_copy = options_.bounce == BounceMode::kNever && region_.pages_pinnable();
  const uint32_t chunk = volume_.superblock().crc_chunk_bytes;
  const uint32_t lbs = volume_.device().logical_block_size();
  // Progress per request, counted from the copy workers.
  std::deque<CopyProgress> progress(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    CopyProgress& p = progress[i];
    MutexLock lock(p.mu);
    if (reqs[i].behind)
      p.done_bytes =
          reqs[i].behind->written_bytes(reqs[i].entry->length_bytes, chunk);
    p.progress = reqs[i].progress;
  }
  // Deques: sources and checksums are shared with the workers by address.
  std::deque<ChunkCrcs> crcs;
  std::deque<RegionSource> sources;
  std::vector<std::vector<DeviceExtent>> extents;
  std::vector<WriteJob> jobs;
  extents.reserve(runs.size());
  for (const Run& run : runs) {
    const CopyRequest& r = reqs[run.request];
    const uint64_t start = run.first_chunk * chunk;
    const uint64_t data =
        std::min<uint64_t>(run.end_chunk * chunk, r.entry->length_bytes) -
        start;
    crcs.emplace_back(chunk, data);
    sources.emplace_back(region_, r.entry->offset_bytes + start, zero_copy,
                         crcs.back(), progress[run.request]);
    extents.push_back(
        device_extents(*r.target, start, (data + lbs - 1) / lbs * lbs));
    jobs.push_back({extents.back(), data, &sources.back()});
  }
  auto stats = engine_->write(jobs);
  // A failed region copy fails the write even when the disk took it all.
  if (!stats.ok()) return stats.take_error();
  std::vector<RunResult> out(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    PCIM_ASSIGN_OR_RETURN(out[i].chunk_crc32c, crcs[i].finish());
    out[i].bounced_bytes = sources[i].bounced_bytes();
    out[i].direct_bytes = jobs[i].length_bytes - out[i].bounced_bytes;
  }
  return out;
}

Result<std::vector<MirrorCopy>> MirrorEngine::write_copies(
    std::span<const CopyRequest> reqs, std::vector<SyncReport>& reports) {
  const uint32_t chunk = volume_.superblock().crc_chunk_bytes;
  std::vector<Run> runs;
  for (size_t i = 0; i < reqs.size(); ++i)
    for (auto [first, end] : runs_to_write(
             chunk_count(reqs[i].entry->length_bytes, chunk), reqs[i].behind))
      runs.push_back({i, first, end});
  const std::string label =
      "mirror of slice '" + reqs.front().entry->name + "'" +
      (reqs.size() > 1 ? " and " + std::to_string(reqs.size() - 1) + " more"
                       : "");
  // Never mirror garbage (docs/DESIGN.md): the memory must be the board's
  // before the copy and still after it, when the commit would make it the
  // mirror.
  PCIM_TRY(check_memory_locked("before the " + label));
  PCIM_TRY(volume_.reopen_device());
  const uint64_t t0 = mono_ns();
  auto written = write_runs(reqs, runs);
  Status flushed = written.ok() ? engine_->flush() : Status();
  if (!written.ok() || !flushed.ok()) {
    Error err = written.ok() ? flushed.take_error() : written.take_error();
    volume_.release_after(err);
    err.message = label + " failed: " + err.message;
    return err;
  }
  PCIM_TRY(check_memory_locked("after writing the " + label +
                               ", before its commit"));
  const uint64_t batch_ns = mono_ns() - t0;
  const int64_t now = wall_clock_ns();
  uint64_t total_bytes = 0;
  for (const CopyRequest& r : reqs) total_bytes += r.entry->length_bytes;
  // Per request: chunk CRCs from write-behind, then from this write's runs.
  std::vector<MirrorCopy> out;
  out.reserve(reqs.size());
  std::vector<uint64_t> bounced(reqs.size()), direct(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    const CopyRequest& r = reqs[i];
    MirrorCopy c = *r.target;
    if (r.behind) {
      c.chunk_crc32c = r.behind->chunk_crc32c;
      bounced[i] = r.behind->bounced_bytes;
      direct[i] = r.behind->direct_bytes;
    } else {
      c.chunk_crc32c.assign(chunk_count(r.entry->length_bytes, chunk), 0);
    }
    out.push_back(std::move(c));
  }
  for (size_t j = 0; j < runs.size(); ++j) {
    const Run& run = runs[j];
    RunResult& rr = (*written)[j];
    std::copy(rr.chunk_crc32c.begin(), rr.chunk_crc32c.end(),
              out[run.request].chunk_crc32c.begin() +
                  static_cast<ptrdiff_t>(run.first_chunk));
    bounced[run.request] += rr.bounced_bytes;
    direct[run.request] += rr.direct_bytes;
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    const SliceEntry& e = *reqs[i].entry;
    MirrorCopy& c = out[i];
    c.generation = reqs[i].generation;
    c.sync_time_ns = now;
    c.sync_duration_ns = total_bytes
        ? static_cast<uint64_t>(static_cast<double>(batch_ns) * e.length_bytes / total_bytes)
        : batch_ns;
    c.crc32c = crc32c_of_chunks(c.chunk_crc32c, chunk, e.length_bytes);
    c.path = region_.kind() == RegionKind::kDma ? MirrorPath::kDma
             : bounced[i] == 0                  ? MirrorPath::kZeroCopy
             : direct[i] == 0                   ? MirrorPath::kBounce
                                                : MirrorPath::kMixed;
    const uint64_t behind =
        reqs[i].behind ? reqs[i].behind->written_bytes(e.length_bytes, chunk)
                       : 0;
    reports.push_back(SyncReport{e.id, e.name, c.generation, e.length_bytes,
                                 behind, c.sync_duration_ns, c.path, c.crc32c});
  }
  return out;
}

Status MirrorEngine::write_behind(uint64_t slice_id, uint64_t first_chunk,
                                  uint64_t count, WriteBehind& wb) {
  // Write-behind gives way to every other operation waiting for the engine
  // (a mirror at close, a restore, a commit), so a long cp does not hold
  // them off.
  MutexLock lock(mu_);
  while (waiting_.load(std::memory_order_acquire) > 0) {
    lock.Unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    lock.Lock();
  }
  // Claimed chunks are unwritten from here on, whatever fails below: the
  // next mirror writes them (a stale mark would keep their old bytes).
  for (uint64_t k = first_chunk;
       k < wb.written.size() && k - first_chunk < count; ++k)
    wb.written[k] = 0;
  PCIM_ASSIGN_OR_RETURN(const SliceEntry* e,
                        find_slice(volume_.table(), slice_id));
  const std::string& name = e->name;
  if (volume_.read_only())
    return make_error(EROFS,
                      "volume on " + volume_.device().path() + " is read-only");
  if (e->copies.size() < 2)
    return make_error(EOPNOTSUPP,
                      "slice '" + name +
                          "' has one mirror copy; "
                          "write-behind would overwrite its only mirror");
  // The copy write-behind fills holds the oldest generation: while the
  // memory is refused it stays as it is (docs/DESIGN.md, "Never mirror
  // garbage"), so `restore --generation` still finds it.
  PCIM_TRY(
      check_memory_locked("before write-behind into slice '" + name + "'"));
  const uint32_t chunk = volume_.superblock().crc_chunk_bytes;
  const uint64_t n = chunk_count(e->length_bytes, chunk);
  if (!wb.active()) {
    wb = WriteBehind{};
    wb.slice_id = e->id;
    wb.target_copy = e->next_copy();
    wb.generation = e->generation() + 1;
    wb.device_epoch = volume_.device_epoch();
    wb.chunk_crc32c.assign(n, 0);
    wb.written.assign(n, 0);
  } else if (!wb.matches(*e, chunk) ||
             wb.device_epoch != volume_.device_epoch()) {
    return make_error(ESTALE,
                      "write-behind of slice '" + name +
                          "' is stale: the slice was mirrored meanwhile, or "
                          "the mirror device was reopened");
  }
  if (first_chunk >= n || count == 0 || count > n - first_chunk)
    return make_error(EINVAL, "chunks [" + std::to_string(first_chunk) + ", +" +
                                  std::to_string(count) +
                                  ") lie outside slice '" + name + "'");
  const CopyRequest req{
      e, &e->copies[wb.target_copy], wb.generation, {}, nullptr};
  const Run run{0, first_chunk, first_chunk + count};
  PCIM_TRY(volume_.reopen_device());
  auto r = write_runs({&req, 1}, {&run, 1});
  if (!r.ok()) {
    Error err = r.take_error();
    err.message = "write-behind of slice '" + name + "' failed: " + err.message;
    volume_.release_after(err);
    return err;
  }
  RunResult& rr = r->front();
  std::copy(rr.chunk_crc32c.begin(), rr.chunk_crc32c.end(),
            wb.chunk_crc32c.begin() + static_cast<ptrdiff_t>(first_chunk));
  for (uint64_t k = first_chunk; k < first_chunk + count; ++k)
    wb.written[k] = 1;
  wb.bounced_bytes += rr.bounced_bytes;
  wb.direct_bytes += rr.direct_bytes;
  return {};
}

static void log_sync(const SyncReport& r) {
  log_info("sync slice=" + r.slice + " bytes=" + std::to_string(r.bytes) +
           (r.behind_bytes ? " behind_bytes=" + std::to_string(r.behind_bytes)
                           : "") +
           " path=" + to_string(r.path) +
           " generation=" + std::to_string(r.generation) +
           " MB/s=" + std::to_string(static_cast<uint64_t>(r.mb_per_s())) +
           " duration_ms=" + std::to_string(r.duration_ns / 1000000));
}

Result<SyncReport> MirrorEngine::sync(
    uint64_t slice_id, const std::function<void(SliceEntry&)>& amend,
    const std::function<void(uint64_t)>& progress, const WriteBehind* behind) {
  auto lock = lock_ahead_of_write_behind();
  PCIM_ASSIGN_OR_RETURN(const SliceEntry* e,
                        find_slice(volume_.table(), slice_id));
  const std::string name = e->name;
  if (volume_.read_only())
    return make_error(EROFS, "volume on " + volume_.device().path() +
                                 " is read-only; slice '" + name +
                                 "' cannot be mirrored");
  const uint32_t target = e->next_copy();
  std::vector<SyncReport> reports;
  if (behind && (!behind->matches(*e, volume_.superblock().crc_chunk_bytes) ||
                 behind->device_epoch != volume_.device_epoch()))
    behind = nullptr;
  const CopyRequest req{e, &e->copies[target], e->generation() + 1, progress,
                        behind};
  PCIM_ASSIGN_OR_RETURN(auto copies, write_copies({&req, 1}, reports));
  const SyncReport report = reports.front();
  SliceTable next = volume_.table();
  SliceEntry& s = *next.find_id(slice_id);
  s.copies[target] = std::move(copies.front());
  s.current_copy = target;
  if (amend) amend(s);
  if (Status c = volume_.commit(std::move(next)); !c.ok()) {
    Error err = c.take_error();
    err.message = "commit of slice '" + name + "' failed: " + err.message;
    return err;
  }
  log_sync(report);
  return report;
}

Result<std::vector<SyncReport>> MirrorEngine::sync_batch(
    const std::vector<uint64_t>& slice_ids,
    const std::function<void(SliceEntry&)>& amend,
    std::span<const WriteBehind* const> behind) {
  auto lock = lock_ahead_of_write_behind();
  if (volume_.read_only())
    return make_error(EROFS, "volume on " + volume_.device().path() + " is read-only");
  const SliceTable& cur = volume_.table();
  std::vector<CopyRequest> reqs;
  std::unordered_map<uint64_t, const SliceEntry*> by_id;
  by_id.reserve(cur.slices.size());
  for (const SliceEntry& e : cur.slices) by_id.emplace(e.id, &e);
  const uint32_t chunk = volume_.superblock().crc_chunk_bytes;
  for (size_t i = 0; i < slice_ids.size(); ++i) {
    auto it = by_id.find(slice_ids[i]);
    if (it == by_id.end())
      return make_error(ENOENT, "no slice with ID " +
                                    std::to_string(slice_ids[i]) +
                                    " (removed meanwhile?)");
    const SliceEntry* e = it->second;
    if (!e) continue;  // named twice
    it->second = nullptr;
    const MirrorCopy* target = &e->copies[e->next_copy()];
    const WriteBehind* wb = i < behind.size() ? behind[i] : nullptr;
    if (wb &&
        (!wb->matches(*e, chunk) || wb->device_epoch != volume_.device_epoch()))
      wb = nullptr;
    reqs.push_back({e, target, e->generation() + 1, {}, wb});
  }
  // In device order, so the engine can gather neighbouring copies.
  auto first_sector = [](const CopyRequest& r) {
    return r.target->extents.empty() ? 0
                                     : r.target->extents.front().start_sector;
  };
  std::sort(reqs.begin(), reqs.end(),
            [&](const CopyRequest& a, const CopyRequest& b) {
              return first_sector(a) < first_sector(b);
            });
  std::vector<SyncReport> reports;
  PCIM_ASSIGN_OR_RETURN(auto copies, write_copies(reqs, reports));
  SliceTable next = cur;
  std::map<uint64_t, size_t> index;
  std::vector<uint32_t> targets;
  for (size_t i = 0; i < reqs.size(); ++i) {
    index[reqs[i].entry->id] = i;
    targets.push_back(reqs[i].entry->next_copy());
  }
  for (SliceEntry& s : next.slices) {
    auto it = index.find(s.id);
    if (it == index.end()) continue;
    s.copies[targets[it->second]] = std::move(copies[it->second]);
    s.current_copy = targets[it->second];
    if (amend) amend(s);
  }
  if (Status c = volume_.commit(std::move(next)); !c.ok()) {
    Error err = c.take_error();
    err.message = "group commit of " + std::to_string(reqs.size()) +
                  " slices failed: " + err.message;
    return err;
  }
  uint64_t bytes = 0;
  for (const auto& r : reports) bytes += r.bytes;
  log_info("group sync slices=" + std::to_string(reqs.size()) +
           " bytes=" + std::to_string(bytes));
  return reports;
}

Result<SyncReport> MirrorEngine::add_slice(SliceEntry entry, bool mirror_now) {
  auto lock = lock_ahead_of_write_behind();
  if (volume_.read_only())
    return make_error(EROFS, "volume on " + volume_.device().path() + " is read-only");
  if (!region_.contains(entry.offset_bytes, entry.length_bytes))
    return make_error(EINVAL, "slice '" + entry.name + "' lies outside " + region_.name());
  region_.prefault_for_read(entry.offset_bytes, entry.length_bytes);
  const std::string name = entry.name;
  SliceTable next = volume_.table();
  PCIM_ASSIGN_OR_RETURN(const uint64_t id,
                        add_slice_to(volume_, next, std::move(entry)));
  SyncReport report;
  report.slice = name;
  report.slice_id = id;
  if (mirror_now) {
    SliceEntry& e = next.slices.back();
    std::vector<SyncReport> reports;
    const CopyRequest req{&e, &e.copies[0], 1, {}, nullptr};
    PCIM_ASSIGN_OR_RETURN(auto copies, write_copies({&req, 1}, reports));
    e.copies[0] = std::move(copies.front());
    report = reports.front();
  }
  if (Status c = volume_.commit(std::move(next)); !c.ok()) {
    Error err = c.take_error();
    err.message = "commit of new slice '" + name + "' failed: " + err.message;
    return err;
  }
  log_info("added slice " + name + " (ID " + std::to_string(id) + ")");
  if (mirror_now) log_sync(report);
  return report;
}

Status MirrorEngine::remove_slice(uint64_t slice_id) {
  auto lock = lock_ahead_of_write_behind();
  PCIM_ASSIGN_OR_RETURN(const SliceEntry* e,
                        find_slice(volume_.table(), slice_id));
  const std::string name = e->name;
  SliceTable next = volume_.table();
  PCIM_TRY(remove_slice_from(next, slice_id));
  PCIM_TRY(volume_.commit(std::move(next)));
  log_info("removed slice " + name + " (ID " + std::to_string(slice_id) + ")");
  return {};
}

Status MirrorEngine::rename_slice(uint64_t slice_id, const std::string& to) {
  auto lock = lock_ahead_of_write_behind();
  PCIM_ASSIGN_OR_RETURN(const SliceEntry* e,
                        find_slice(volume_.table(), slice_id));
  const std::string from = e->name;
  SliceTable next = volume_.table();
  PCIM_TRY(rename_slice_in(next, slice_id, to));
  PCIM_TRY(volume_.commit(std::move(next)));
  log_info("renamed slice " + from + " to " + to + " (ID " +
           std::to_string(slice_id) + ")");
  return {};
}

namespace {
// The whole-slice CRC32C must be the combination of the chunk CRCs (§5);
// then chunks that each match their CRC make a copy whose whole CRC matches.
Status check_whole_crc(const SliceEntry& e, const MirrorCopy& c,
                       uint32_t chunk_bytes) {
  if (c.chunk_crc32c.size() != chunk_count(e.length_bytes, chunk_bytes) ||
      crc32c_of_chunks(c.chunk_crc32c, chunk_bytes, e.length_bytes) != c.crc32c)
    return make_error(EUCLEAN, "whole-slice CRC32C mismatch");
  return {};
}

std::string byte_range(uint64_t begin, uint64_t length) {
  return "[" + std::to_string(begin) + ", " + std::to_string(begin + length) +
         ")";
}

// Fills `d` (when given) for a failure `err` of copy `c` of slice `e`: the
// bytes of a failed read (`rf`) or of bad CRC chunk `bad_chunk`.
void fill_damage(CopyDamage* d, const SliceEntry& e, const MirrorCopy& c,
                 uint32_t chunk_bytes, const Error& err, const ReadFailure& rf,
                 std::optional<uint64_t> bad_chunk) {
  if (!d) return;
  *d = CopyDamage{};
  d->generation = c.generation;
  d->code = err.code;
  d->message = err.what();
  if (rf.known) {
    d->unreadable = true;
    d->slice_offset_bytes = std::min(rf.mirror_offset_bytes, e.length_bytes);
    d->length_bytes =
        std::min(rf.length_bytes, e.length_bytes - d->slice_offset_bytes);
    d->device = {{rf.device_offset_bytes, rf.length_bytes}};
  } else if (bad_chunk) {
    d->slice_offset_bytes = *bad_chunk * chunk_bytes;
    d->length_bytes =
        std::min<uint64_t>(chunk_bytes, e.length_bytes - d->slice_offset_bytes);
    d->device = device_extents(c, d->slice_offset_bytes, d->length_bytes);
  } else if (err.code == EUCLEAN) {
    d->length_bytes = e.length_bytes;  // the whole-slice CRC
  }
}

// Where a failed read left `err`: the damaged chunk's bytes, appended to
// the message, so that every caller names them.
Error with_range(Error err, const CopyDamage& d) {
  if (d.length_bytes == 0) return err;
  err.message +=
      " (slice bytes " + byte_range(d.slice_offset_bytes, d.length_bytes) + ")";
  return err;
}

// The device memory a series of restore passes left written: pass i wrote
// the CRC chunks marked in `chunks` from `copy` (in any order: the copy
// workers write verified chunks as they come); later passes overwrite
// earlier ones.
struct Pass {
  uint32_t copy;
  uint64_t generation;
  std::vector<uint8_t> chunks;  // 1: chunk k written
};
std::vector<RestoredRange> written_by(const SliceEntry& e, uint64_t chunk_bytes,
                                      const std::vector<Pass>& passes) {
  std::vector<RestoredRange> out;
  const uint64_t n = chunk_count(e.length_bytes, chunk_bytes);
  const Pass* last = nullptr;  // of the range being built
  for (uint64_t k = 0; k < n; ++k) {
    const Pass* p = nullptr;  // the last pass that wrote chunk k
    for (auto it = passes.rbegin(); it != passes.rend() && !p; ++it)
      if (k < it->chunks.size() && it->chunks[k]) p = &*it;
    const uint64_t start = k * chunk_bytes;
    const uint64_t len = std::min(chunk_bytes, e.length_bytes - start);
    if (p && p == last) {
      out.back().length_bytes += len;
    } else if (p) {
      out.push_back({e.offset_bytes + start, len, p->copy, p->generation});
    }
    last = p;
  }
  return out;
}
}  // namespace

const char* CopyDamage::errno_name() const {
  const char* n = strerrordesc_np(code) ? strerrorname_np(code) : nullptr;
  return n ? n : "errno";
}

const char* CopyDamage::state() const {
  return unreadable        ? "is unreadable"
         : code == EUCLEAN ? "is damaged"
                           : "failed";
}

std::string CopyDamage::detail() const {
  std::string device_bytes;
  for (const DeviceExtent& x : device)
    device_bytes += (device_bytes.empty() ? "" : ", ") +
                    byte_range(x.offset_bytes, x.length_bytes);
  if (unreadable)
    return "mirror device bytes " + device_bytes + " fail to read with " +
           errno_name() + " (" + message + "); slice bytes " +
           byte_range(slice_offset_bytes, length_bytes);
  if (code == EUCLEAN && length_bytes)
    return message + " (EUCLEAN; slice bytes " +
           byte_range(slice_offset_bytes, length_bytes) +
           (device_bytes.empty() ? ""
                                 : ", mirror device bytes " + device_bytes) +
           ")";
  return message;
}

std::string CopyDamage::describe() const {
  return "copy " + std::to_string(copy) + " (generation " +
         std::to_string(generation) + ") " + state() + ": " + detail();
}

std::string describe_written(const std::vector<RestoredRange>& written) {
  if (written.empty()) return "nothing";
  std::string out;
  for (const RestoredRange& w : written)
    out += (out.empty() ? "" : ", ") +
           byte_range(w.offset_bytes, w.length_bytes) + " from copy " +
           std::to_string(w.copy) + " (generation " +
           std::to_string(w.generation) + ")";
  return out;
}

// Reads copy `c` of slice `e` through `engine`: checks that the stored
// chunk CRCs combine to the whole CRC, then each chunk's CRC32C on a copy
// worker as soon as all its bytes are in (in place, or staged when split
// across reads), and hands each matching chunk to `on_chunk` (none: verify
// only) before counting it in `progress`. The first mismatch (EUCLEAN
// naming the chunk) or failed read stops the read; `damage` says where.
static Status read_verified(UringEngine& engine, uint32_t chunk_bytes,
                            const SliceEntry& e, const MirrorCopy& c,
                            const ChunkAssembler::OnChunk& on_chunk,
                            const std::function<void(uint64_t)>& progress,
                            CopyDamage* damage) {
  if (Status w = check_whole_crc(e, c, chunk_bytes); !w.ok()) {
    fill_damage(damage, e, c, chunk_bytes, w.error(), {}, std::nullopt);
    return w;
  }
  BadChunk bad;
  CopyProgress done;
  done.progress = progress;
  ChunkAssembler chunks(
      chunk_bytes, e.length_bytes,
      [&](uint64_t k, const std::byte* data, uint64_t n) -> Status {
        if (crc32c(data, n) != c.chunk_crc32c[k]) return bad.mismatch(k);
        if (on_chunk) PCIM_TRY(on_chunk(k, data, n));
        done.add(n);
        return {};
      });
  auto sink = [&](uint64_t off, const std::byte* data, uint64_t n) -> Status {
    return chunks.feed(off, data, n);
  };
  ReadFailure rf;
  auto stats = engine.read(device_extents(c), e.length_bytes, sink, &rf);
  if (stats.ok()) return {};
  Error err = stats.take_error();
  const std::optional<uint64_t> k = bad.get();
  if (k && err.code == EUCLEAN)
    err = make_error(EUCLEAN,
                     "chunk " + std::to_string(*k) + " fails its CRC32C");
  CopyDamage d;
  fill_damage(&d, e, c, chunk_bytes, err, rf,
              err.code == EUCLEAN ? k : std::nullopt);
  if (damage) *damage = d;
  return with_range(std::move(err), d);
}

Status verify_mirror(UringEngine& engine, const Superblock& sb,
                     const SliceEntry& e, const MirrorCopy& c,
                     const std::function<void(uint64_t)>& progress,
                     CopyDamage* damage) {
  // The stored chunk CRCs combine to the whole CRC, so matching chunks
  // make a matching slice.
  return read_verified(engine, sb.crc_chunk_bytes, e, c, {}, progress, damage);
}

Status MirrorEngine::copy_verified(
    const SliceEntry& e, const MirrorCopy& c, std::vector<uint8_t>& written,
    const std::function<void(uint64_t)>& restored, CopyDamage* damage) {
  // Each chunk is copied into the region only once it is verified, so
  // nothing unverified reaches the region; chunks are written in any
  // order, and `written` marks each one written.
  const uint32_t chunk = volume_.superblock().crc_chunk_bytes;
  written.assign(c.chunk_crc32c.size(), 0);
  return read_verified(
      *engine_, chunk, e, c,
      [&](uint64_t k, const std::byte* data, uint64_t n) -> Status {
        // The chunk's pages are mapped writable in one call just before the
        // copy, on this worker, while the device reads the next chunks: a
        // fresh mapping of a memory file costs no fault per 4 KiB page, and
        // the restore no serial prefault pass of the window before its
        // first read (0.24 s of a 1.2 s restore of 1 GiB here).
        region_.prefault_for_write(e.offset_bytes + k * chunk, n);
        PCIM_TRY(region_.copy_to(e.offset_bytes + k * chunk, data, n));
        written[k] = 1;  // each chunk by one worker; read after the read
        return {};
      },
      restored, damage);
}

Status MirrorEngine::verify(uint64_t slice_id) {
  auto lock = lock_ahead_of_write_behind();
  PCIM_TRY(volume_.reopen_device());
  PCIM_ASSIGN_OR_RETURN(const SliceEntry* e,
                        find_slice(volume_.table(), slice_id));
  const std::string name = e->name;
  const MirrorCopy* c = e->committed();
  if (!c) return {};
  Status s = verify_mirror(*engine_, volume_.superblock(), *e, *c);
  if (!s.ok()) {
    Error err = s.take_error();
    err.message = "mirror of slice '" + name + "' generation " +
                  std::to_string(c->generation) + ": " + err.message;
    return err;
  }
  return {};
}

std::string describe_generations(const SliceEntry& e) {
  std::string out;
  for (uint32_t i : e.copies_by_generation())
    out += (out.empty() ? "" : ", ") + std::to_string(e.copies[i].generation) +
           (i == e.current_copy ? " (current)" : "");
  return out.empty() ? "none (never mirrored)" : out;
}

Result<RestoreReport> MirrorEngine::restore(
    uint64_t slice_id, const std::function<void(uint64_t)>& progress,
    RestoreReport* failed, uint64_t generation) {
  auto lock = lock_ahead_of_write_behind();
  PCIM_TRY(volume_.reopen_device());
  PCIM_ASSIGN_OR_RETURN(const SliceEntry* e,
                        find_slice(volume_.table(), slice_id));
  const std::string name = e->name;
  RestoreReport r;
  r.slice_id = slice_id;
  r.slice = name;
  const std::string history = "committed generations of slice '" + name +
                              "': " + describe_generations(*e) +
                              " ('pcimirror log' lists them)";
  // A chosen generation (restore --generation): that copy or nothing.
  std::optional<uint32_t> chosen;
  if (generation != 0) {
    for (uint32_t i = 0; i < e->copies.size(); ++i)
      if (e->copies[i].generation == generation) chosen = i;
    if (!chosen || !e->committed())
      return make_error(ENOENT, "slice '" + name + "' has no generation " +
                                    std::to_string(generation) +
                                    "; device memory was left untouched; " +
                                    history);
  }
  if (!e->committed()) {
    r.skipped = true;
    r.note = "never mirrored; left as it is";
    return r;
  }
  // A restore into a device that does not answer writes nowhere; a restore
  // into reset memory is what restore is for (the canary is renewed once
  // every slice is back, renew_canary()).
  PCIM_TRY(guard_.check_device("before restoring slice '" + name + "'"));
  // (A canary that cannot be read says nothing; the restore's own copies
  // report a region that fails.)
  const bool memory_reset = [&] {
    const auto& canary = volume_.table().canary;
    // A canary beyond the region (a smaller region given by --memory or
    // ignore_device_id) is not read at all: it says nothing either.
    if (!canary || !region_.contains(canary->offset_bytes, kCanaryBytes))
      return false;
    auto m = guard_.canary_matches(*canary);
    return m.ok() && !*m;
  }();
  if (memory_reset)
    log_info("restoring slice '" + name + "' into " + region_.name() +
             ", whose canary does not match: its memory was reset since the "
             "last mirror" +
             (options_.restore_verify == RestoreVerify::kAuto && !chosen
                  ? "; restore_verify=auto verifies each chunk as it is "
                    "copied (one read of the mirror)"
                  : ""));
  const uint64_t t0 = mono_ns();
  const uint64_t len = e->length_bytes;
  const uint64_t chunk_bytes = volume_.superblock().crc_chunk_bytes;
  // The current copy first, then the older generations that are written,
  // newest first (docs/FORMAT.md §8). A copy whose sectors the device
  // cannot read (a medium error) or that fails a CRC is damaged: the next
  // one is tried. The first copy is verified inline or by a prepass as
  // configured; a fallback copy always by a prepass, so a damaged older
  // copy adds nothing to device memory. A chosen generation is the only
  // copy tried, always after a prepass: its damage writes no memory.
  const uint32_t cur = e->current_copy;
  const uint64_t cur_gen = e->copies[cur].generation;
  std::vector<uint32_t> order;
  if (chosen) {
    order.push_back(*chosen);
  } else {
    order.push_back(cur);
    for (uint32_t i : e->copies_by_generation())
      if (i != cur && e->copies[i].generation < cur_gen) order.push_back(i);
  }
  // auto: memory that was reset holds nothing to keep, so a restore that
  // meets damage part-way loses nothing by having written the chunks
  // verified before it, and reads the copy once instead of twice; any
  // other memory is left untouched unless the whole copy verifies.
  const bool inline_first =
      !chosen &&
      (options_.restore_verify == RestoreVerify::kInline ||
       (options_.restore_verify == RestoreVerify::kAuto && memory_reset));
  r.verified_inline = inline_first;
  std::vector<Pass> passes;
  const MirrorCopy* used = nullptr;
  // A failure that is not the copy's own (the io_uring engine failing, not
  // a read error of the device or a CRC mismatch) says nothing about the
  // copy: falling back would put an older mirror over an intact newer one.
  // It ends the restore with its errno instead (as in fsck).
  bool not_damage = false;
  for (size_t i = 0; i < order.size() && !used && !not_damage; ++i) {
    const uint32_t idx = order[i];
    const MirrorCopy& c = e->copies[idx];
    CopyDamage d;
    const bool inline_pass = i == 0 && inline_first;
    if (!inline_pass) {
      const std::function<void(uint64_t)> none;
      Status v = verify_mirror(*engine_, volume_.superblock(), *e, c,
                               i == 0 ? progress : none, &d);
      if (!v.ok()) {
        d.copy = idx;
        not_damage = !d.is_damage();
        log_warning("slice '" + name + "': " + d.describe());
        r.damage.push_back(std::move(d));
        continue;
      }
    }
    // The copy pass: a copy verified a moment ago is read again, and each
    // chunk is checked once more (the disk may have changed) before it is
    // copied into the region.
    passes.push_back({idx, c.generation, {}});
    Status s = copy_verified(
        *e, c, passes.back().chunks,
        [&](uint64_t b) {
          if (progress) progress(inline_pass ? 2 * b : len + b);
        },
        &d);
    if (s.ok()) {
      used = &c;
      break;
    }
    d.copy = idx;
    not_damage = !d.is_damage();
    log_warning("slice '" + name + "': " + d.describe() + "; " +
                (inline_pass ? "inline restore" : "restore") +
                " stopped part-way, device memory written: " +
                describe_written(written_by(*e, chunk_bytes, passes)));
    r.damage.push_back(std::move(d));
  }
  r.written = written_by(*e, chunk_bytes, passes);
  if (!used) {
    std::string why;
    for (const CopyDamage& d : r.damage)
      why += (why.empty() ? "" : "; ") + d.describe();
    if (not_damage)
      why += chosen ? "; that is no damage of the copy (retry the restore)"
                    : "; that is no damage of the copy, so no older copy was "
                      "used (retry the restore)";
    else if (chosen)
      why += "; generation " + std::to_string(generation) +
             " cannot be restored, choose another: " + history;
    else if (order.size() == 1)
      why += e->copies.size() == 1
                 ? "; the volume keeps one copy per slice (--copies 1)"
                 : "; no older generation is written";
    std::string wrote =
        r.written.empty()
            ? "device memory was left untouched"
            : "device memory written before the failure: " +
                  describe_written(r.written) +
                  (inline_first
                       ? options_.restore_verify == RestoreVerify::kInline
                             ? " (restore_verify=inline writes verified "
                               "chunks before the damage)"
                             : " (restore_verify=auto verifies chunk by "
                               "chunk into memory that was reset, writing "
                               "verified chunks before the damage)"
                       : "") +
                  "; the rest of the slice is as it was";
    // The first copy's errno; the message names each copy's.
    Error err = make_error(
        r.damage.front().code,
        "restore of slice '" + name + "'" +
            (chosen ? " generation " + std::to_string(generation) : "") +
            " failed: " +
            (not_damage ? ""
             : chosen   ? "the copy is not readable and intact: "
                        : "no copy is readable and intact: ") +
            why + "; " + wrote);
    r.duration_ns = mono_ns() - t0;
    if (failed) *failed = std::move(r);
    return err;
  }
  r.generation = used->generation;
  r.bytes = len;
  r.duration_ns = mono_ns() - t0;
  if (Status d = guard_.check_device("after restoring slice '" + name + "'");
      !d.ok()) {
    Error err = d.take_error();
    err.message = "restore of slice '" + name +
                  "' cannot be trusted: the device stopped answering while it "
                  "was written (" +
                  err.message + "); restore again once the device answers";
    if (failed) *failed = std::move(r);
    return err;
  }
  r.fell_back = !chosen && used != &e->copies[cur];
  if (r.fell_back) {
    std::string why;
    for (const CopyDamage& d : r.damage)
      why += (why.empty() ? "current mirror, " : "; older mirror, ") +
             d.describe();
    r.note = why + "; restored generation " + std::to_string(used->generation) +
             " (copy " + std::to_string(used - e->copies.data()) +
             "), the newest intact older mirror";
    log_warning("slice '" + name + "': " + r.note);
  } else if (chosen) {
    r.note = "restored the chosen generation " +
             std::to_string(used->generation) + " (copy " +
             std::to_string(*chosen) + ")" +
             (*chosen == cur ? ", the current one" : "");
  }
  log_info("restore slice=" + name + " bytes=" + std::to_string(r.bytes) +
           " generation=" + std::to_string(r.generation) + " duration_ms=" +
           std::to_string(r.duration_ns / 1000000));
  return r;
}

}  // namespace pcimirror
