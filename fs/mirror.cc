#include "fs/mirror.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string_view>
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
int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Accumulates the per-chunk CRC32Cs (§5) of data fed in mirror order from a
// chunk boundary. The whole-slice CRC is combined from them
// (crc32c_of_chunks), so the data is checksummed once.
class ChunkCrcs {
 public:
  explicit ChunkCrcs(uint32_t chunk_bytes) : chunk_bytes_(chunk_bytes) {}
  void feed(const std::byte* data, uint64_t n) {
    while (n > 0) {
      const uint64_t take = std::min<uint64_t>(n, chunk_bytes_ - in_chunk_);
      chunk_ = crc32c_extend(chunk_, data, take);
      in_chunk_ += take;
      data += take;
      n -= take;
      if (in_chunk_ == chunk_bytes_) close_chunk();
    }
  }
  // Finishes a trailing partial chunk.
  void finish() {
    if (in_chunk_) close_chunk();
  }
  std::vector<uint32_t>& chunks() { return chunks_; }

 private:
  void close_chunk() {
    chunks_.push_back(chunk_);
    chunk_ = 0;
    in_chunk_ = 0;
  }
  uint32_t chunk_bytes_;
  uint64_t in_chunk_ = 0;
  uint32_t chunk_ = 0;
  std::vector<uint32_t> chunks_;
};

// The source of one run of a slice: region memory from `offset_bytes` on.
// `done_bytes` counts the bytes of the whole copy handed to the device, for
// `progress`.
class RegionSource final : public WriteSource {
 public:
  RegionSource(Region& region, uint64_t offset_bytes, bool zero_copy,
               ChunkCrcs& crc, uint64_t& done_bytes,
               const std::function<void(uint64_t)>& progress)
      : region_(region),
        offset_(offset_bytes),
        zero_copy_(zero_copy),
        crc_(crc),
        done_(done_bytes),
        progress_(progress) {}
  const std::byte* direct(uint64_t mirror_offset, uint64_t) override {
    return zero_copy_ ? region_.base() + offset_ + mirror_offset : nullptr;
  }
  void fill(uint64_t mirror_offset, std::byte* dst, uint64_t n) override {
    region_.copy_from(offset_ + mirror_offset, dst, n);
    bounced_ += n;
  }
  uint64_t bounced_bytes() const { return bounced_; }
  void observe(uint64_t, const std::byte* data, uint64_t n) override {
    crc_.feed(data, n);
    done_ += n;
    if (progress_) progress_(done_);
  }

 private:
  Region& region_;
  uint64_t offset_;
  bool zero_copy_;
  ChunkCrcs& crc_;
  uint64_t& done_;
  const std::function<void(uint64_t)>& progress_;
  uint64_t bounced_ = 0;
};

const SliceEntry* find(const SliceTable& t, const std::string& name) {
  for (const SliceEntry& e : t.slices)
    if (e.name == name) return &e;
  return nullptr;
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
  return make_error(EINVAL, "restore_verify='" + text + "': use prepass or inline");
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

bool WriteBehind::matches(const SliceEntry& e, uint32_t crc_chunk_bytes) const {
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
  std::vector<uint64_t> done(reqs.size());  // progress per request
  for (size_t i = 0; i < reqs.size(); ++i)
    if (reqs[i].behind)
      done[i] =
          reqs[i].behind->written_bytes(reqs[i].entry->length_bytes, chunk);
  std::vector<ChunkCrcs> crcs;
  std::vector<RegionSource> sources;
  std::vector<std::vector<DeviceExtent>> extents;
  std::vector<WriteJob> jobs;
  crcs.reserve(runs.size());
  sources.reserve(runs.size());
  extents.reserve(runs.size());
  for (const Run& run : runs) {
    const CopyRequest& r = reqs[run.request];
    const uint64_t start = run.first_chunk * chunk;
    const uint64_t data =
        std::min<uint64_t>(run.end_chunk * chunk, r.entry->length_bytes) -
        start;
    crcs.emplace_back(chunk);
    sources.emplace_back(region_, r.entry->offset_bytes + start, zero_copy,
                         crcs.back(), done[run.request], r.progress);
    extents.push_back(
        device_extents(*r.target, start, (data + lbs - 1) / lbs * lbs));
    jobs.push_back({extents.back(), data, &sources.back()});
  }
  auto stats = engine_->write(jobs);
  if (!stats.ok()) return stats.take_error();
  std::vector<RunResult> out(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    crcs[i].finish();
    out[i].chunk_crc32c = std::move(crcs[i].chunks());
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
  const uint64_t t0 = mono_ns();
  auto written = write_runs(reqs, runs);
  Status flushed = written.ok() ? engine_->flush() : Status();
  if (!written.ok() || !flushed.ok()) {
    Error err = written.ok() ? flushed.take_error() : written.take_error();
    err.message = "mirror of slice '" + reqs.front().entry->name + "'" +
                  (reqs.size() > 1 ? " and " + std::to_string(reqs.size() - 1) + " more" : "") +
                  " failed: " + err.message;
    return err;
  }
  const uint64_t batch_ns = mono_ns() - t0;
  const int64_t now = wall_ns();
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
    c.path = bounced[i] == 0  ? MirrorPath::kZeroCopy
             : direct[i] == 0 ? MirrorPath::kBounce
                              : MirrorPath::kMixed;
    const uint64_t behind =
        reqs[i].behind ? reqs[i].behind->written_bytes(e.length_bytes, chunk)
                       : 0;
    reports.push_back(SyncReport{e.name, c.generation, e.length_bytes, behind,
                                 c.sync_duration_ns, c.path, c.crc32c});
  }
  return out;
}

Status MirrorEngine::write_behind(const std::string& name, uint64_t first_chunk,
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
  const SliceEntry* e = find(volume_.table(), name);
  if (!e) return make_error(ENOENT, "no slice named '" + name + "'");
  if (volume_.read_only())
    return make_error(EROFS,
                      "volume on " + volume_.device().path() + " is read-only");
  if (e->copies.size() < 2)
    return make_error(EOPNOTSUPP,
                      "slice '" + name +
                          "' has one mirror copy; "
                          "write-behind would overwrite its only mirror");
  const uint32_t chunk = volume_.superblock().crc_chunk_bytes;
  const uint64_t n = chunk_count(e->length_bytes, chunk);
  if (!wb.active()) {
    wb = WriteBehind{};
    wb.target_copy = e->next_copy();
    wb.generation = e->generation() + 1;
    wb.chunk_crc32c.assign(n, 0);
    wb.written.assign(n, 0);
  } else if (!wb.matches(*e, chunk)) {
    return make_error(ESTALE,
                      "write-behind of slice '" + name +
                          "' is stale: the slice was mirrored meanwhile");
  }
  if (first_chunk >= n || count == 0 || count > n - first_chunk)
    return make_error(EINVAL, "chunks [" + std::to_string(first_chunk) + ", +" +
                                  std::to_string(count) +
                                  ") lie outside slice '" + name + "'");
  for (uint64_t k = first_chunk; k < first_chunk + count; ++k)
    wb.written[k] = 0;
  const CopyRequest req{
      e, &e->copies[wb.target_copy], wb.generation, {}, nullptr};
  const Run run{0, first_chunk, first_chunk + count};
  auto r = write_runs({&req, 1}, {&run, 1});
  if (!r.ok()) {
    Error err = r.take_error();
    err.message = "write-behind of slice '" + name + "' failed: " + err.message;
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
    const std::string& name, const std::function<void(SliceEntry&)>& amend,
    const std::function<void(uint64_t)>& progress, const WriteBehind* behind) {
  auto lock = lock_ahead_of_write_behind();
  const SliceEntry* e = find(volume_.table(), name);
  if (!e) return make_error(ENOENT, "no slice named '" + name + "'");
  if (volume_.read_only())
    return make_error(EROFS, "volume on " + volume_.device().path() +
                                 " is read-only; slice '" + name +
                                 "' cannot be mirrored");
  const uint32_t target = e->next_copy();
  std::vector<SyncReport> reports;
  if (behind && !behind->matches(*e, volume_.superblock().crc_chunk_bytes))
    behind = nullptr;
  const CopyRequest req{e, &e->copies[target], e->generation() + 1, progress,
                        behind};
  PCIM_ASSIGN_OR_RETURN(auto copies, write_copies({&req, 1}, reports));
  const SyncReport report = reports.front();
  SliceTable next = volume_.table();
  for (SliceEntry& s : next.slices) {
    if (s.name != name) continue;
    s.copies[target] = std::move(copies.front());
    s.current_copy = target;
    if (amend) amend(s);
  }
  if (Status c = volume_.commit(std::move(next)); !c.ok()) {
    Error err = c.take_error();
    err.message = "commit of slice '" + name + "' failed: " + err.message;
    return err;
  }
  log_sync(report);
  return report;
}

Result<std::vector<SyncReport>> MirrorEngine::sync_batch(
    const std::vector<std::string>& names,
    const std::function<void(SliceEntry&)>& amend,
    std::span<const WriteBehind* const> behind) {
  auto lock = lock_ahead_of_write_behind();
  if (volume_.read_only())
    return make_error(EROFS, "volume on " + volume_.device().path() + " is read-only");
  const SliceTable& cur = volume_.table();
  std::vector<CopyRequest> reqs;
  std::unordered_map<std::string_view, const SliceEntry*> by_name;
  by_name.reserve(cur.slices.size());
  for (const SliceEntry& e : cur.slices) by_name.emplace(e.name, &e);
  const uint32_t chunk = volume_.superblock().crc_chunk_bytes;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& n = names[i];
    auto it = by_name.find(n);
    if (it == by_name.end())
      return make_error(ENOENT, "no slice named '" + n + "'");
    const SliceEntry* e = it->second;
    if (!e) continue;  // named twice
    it->second = nullptr;
    const MirrorCopy* target = &e->copies[e->next_copy()];
    const WriteBehind* wb = i < behind.size() ? behind[i] : nullptr;
    if (wb && !wb->matches(*e, chunk)) wb = nullptr;
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
  std::map<std::string, size_t> index;
  std::vector<uint32_t> targets;
  for (size_t i = 0; i < reqs.size(); ++i) {
    index[reqs[i].entry->name] = i;
    targets.push_back(reqs[i].entry->next_copy());
  }
  for (SliceEntry& s : next.slices) {
    auto it = index.find(s.name);
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
  const std::string name = entry.name;
  SliceTable next = volume_.table();
  PCIM_TRY(add_slice_to(volume_, next, std::move(entry)));
  SyncReport report;
  report.slice = name;
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
  log_info("added slice " + name);
  if (mirror_now) log_sync(report);
  return report;
}

Status MirrorEngine::remove_slice(const std::string& name) {
  auto lock = lock_ahead_of_write_behind();
  SliceTable next = volume_.table();
  PCIM_TRY(remove_slice_from(next, name));
  PCIM_TRY(volume_.commit(std::move(next)));
  log_info("removed slice " + name);
  return {};
}

Status MirrorEngine::rename_slice(const std::string& from, const std::string& to,
                                  bool replace) {
  auto lock = lock_ahead_of_write_behind();
  SliceTable next = volume_.table();
  PCIM_TRY(rename_slice_in(next, from, to, replace));
  PCIM_TRY(volume_.commit(std::move(next)));
  log_info("renamed slice " + from + " to " + to);
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
}  // namespace

Status verify_mirror(UringEngine& engine, const Superblock& sb,
                     const SliceEntry& e, const MirrorCopy& c,
                     const std::function<void(uint64_t)>& progress) {
  const uint32_t chunk_bytes = sb.crc_chunk_bytes;
  PCIM_TRY(check_whole_crc(e, c, chunk_bytes));
  ChunkCrcs crc(chunk_bytes);
  size_t checked = 0;
  auto check_closed = [&]() -> Status {
    for (; checked < crc.chunks().size(); ++checked)
      if (crc.chunks()[checked] != c.chunk_crc32c[checked])
        return make_error(EUCLEAN, "chunk " + std::to_string(checked) +
                                       " fails its CRC32C");
    return {};
  };
  auto sink = [&](uint64_t off, const std::byte* data, uint64_t n) -> Status {
    crc.feed(data, n);
    if (progress) progress(off + n);
    return check_closed();  // as soon as chunks close, to stop early on damage
  };
  auto stats = engine.read(device_extents(c), e.length_bytes, sink);
  if (!stats.ok()) return stats.take_error();
  crc.finish();
  return check_closed();
}

Status MirrorEngine::copy_verified(const SliceEntry& e, const MirrorCopy& c,
                                   const std::function<void(uint64_t)>& restored) {
  // A CRC chunk that a read holds whole is verified in place and copied;
  // one split across reads is staged, then verified and copied. Nothing
  // unverified reaches the region.
  const uint64_t chunk = volume_.superblock().crc_chunk_bytes;
  PCIM_TRY(check_whole_crc(e, c, static_cast<uint32_t>(chunk)));
  AlignedBuffer staging(chunk, 4096);
  auto sink = [&](uint64_t off, const std::byte* data, uint64_t n) -> Status {
    for (uint64_t done = 0; done < n;) {
      const uint64_t pos = off + done, k = pos / chunk, start = k * chunk;
      const uint64_t end = std::min<uint64_t>(start + chunk, e.length_bytes);
      const uint64_t take = std::min(n - done, end - pos);
      const std::byte* verified = nullptr;
      if (pos == start && take == end - start) {
        verified = data + done;
      } else {
        std::memcpy(staging.data() + (pos - start), data + done, take);
        if (pos + take == end) verified = staging.data();
      }
      if (verified) {
        if (crc32c(verified, end - start) != c.chunk_crc32c[k])
          return make_error(EUCLEAN, "chunk " + std::to_string(k) + " fails its CRC32C");
        region_.copy_to(e.offset_bytes + start, verified, end - start);
        if (restored) restored(end);
      }
      done += take;
    }
    return {};
  };
  auto stats = engine_->read(device_extents(c), e.length_bytes, sink);
  if (!stats.ok()) return stats.take_error();
  return {};
}

Status MirrorEngine::verify(const std::string& name) {
  auto lock = lock_ahead_of_write_behind();
  const SliceEntry* e = find(volume_.table(), name);
  if (!e) return make_error(ENOENT, "no slice named '" + name + "'");
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

Result<RestoreReport> MirrorEngine::restore(
    const std::string& name, const std::function<void(uint64_t)>& progress) {
  auto lock = lock_ahead_of_write_behind();
  const SliceEntry* e = find(volume_.table(), name);
  if (!e) return make_error(ENOENT, "no slice named '" + name + "'");
  RestoreReport r;
  r.slice = name;
  const MirrorCopy* c = e->committed();
  if (!c) {
    r.skipped = true;
    r.note = "never mirrored; left as it is";
    return r;
  }
  const uint64_t t0 = mono_ns();
  region_.prefault_for_write(e->offset_bytes, e->length_bytes);
  if (options_.restore_verify == RestoreVerify::kInline) {
    Status s = copy_verified(*e, *c, [&](uint64_t b) {
      if (progress) progress(2 * b);  // one pass stands for both halves
    });
    if (s.ok()) {
      r.generation = c->generation;
      r.bytes = e->length_bytes;
      r.duration_ns = mono_ns() - t0;
      return r;
    }
    if (s.error().code != EUCLEAN) {
      Error err = s.take_error();
      err.message = "restore of slice '" + name + "' failed: " + err.message;
      return err;
    }
    // Damage found part-way: what was written was verified; the prepass
    // path below falls back to the previous copy or refuses.
    log_warning("slice '" + name + "': inline restore stopped: " + s.error().message);
  }
  Status v = verify_mirror(*engine_, volume_.superblock(), *e, *c, progress);
  if (!v.ok() && v.error().code != EUCLEAN) {
    // An I/O error is not damage: report it, touch nothing.
    Error err = v.take_error();
    err.message = "restore of slice '" + name + "' failed: " + err.message;
    return err;
  }
  if (!v.ok()) {
    const MirrorCopy* other = nullptr;
    if (e->copies.size() == 2 && e->copies[1 - e->current_copy].generation)
      other = &e->copies[1 - e->current_copy];
    std::string why = v.error().message;
    if (other && verify_mirror(*engine_, volume_.superblock(), *e, *other).ok()) {
      r.fell_back = true;
      r.note = "current mirror (generation " + std::to_string(c->generation) +
               ") is damaged (" + why + "); restored the previous mirror, "
               "generation " + std::to_string(other->generation);
      log_warning("slice '" + name + "': " + r.note);
      c = other;
    } else {
      return make_error(EUCLEAN, "mirror of slice '" + name +
                                     "' generation " +
                                     std::to_string(c->generation) +
                                     " is damaged (" + why +
                                     ") and no intact older copy exists; " +
                                     (options_.restore_verify == RestoreVerify::kInline
                                          ? "verified chunks before the damage were "
                                            "written (restore_verify=inline)"
                                          : "device memory was left untouched"));
    }
  }
  // Second pass: the copy verified a moment ago is read again, and each
  // chunk is checked once more (the disk may have changed) before it is
  // copied into the region.
  if (Status s = copy_verified(*e, *c, [&](uint64_t b) {
        if (progress) progress(e->length_bytes + b);
      });
      !s.ok()) {
    Error err = s.take_error();
    err.message = "restore of slice '" + name + "' failed: " + err.message;
    return err;
  }
  r.generation = c->generation;
  r.bytes = e->length_bytes;
  r.duration_ns = mono_ns() - t0;
  log_info("restore slice=" + name + " bytes=" + std::to_string(r.bytes) +
           " generation=" + std::to_string(r.generation) + " duration_ms=" +
           std::to_string(r.duration_ns / 1000000));
  return r;
}

}  // namespace pcimirror
