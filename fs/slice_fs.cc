#include "fs/slice_fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <utility>

#include "fs/allocator.h"
#include "fs/slice_table.h"
#include "io/log.h"
#include "io/units.h"

namespace pcimirror {
namespace {

struct timespec to_timespec(int64_t ns) {
  struct timespec ts {};
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  return ts;
}
int64_t from_timespec(const struct timespec& ts) {
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}
std::string iso_time(int64_t ns) {
  if (ns == 0) return "never";
  std::time_t t = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ns / 1000000 % 1000));
  return out;
}
// Zero-fills go out in pieces of this size from one static zero buffer.
constexpr size_t kZeroPieceBytes = 1u << 20;
// Write-behind writes at most this many CRC chunks per engine call, so a
// mirror waiting for the slice's lock does not wait long.
constexpr uint64_t kBehindRunChunks = 16;

}  // namespace

Result<MirrorOnClose> parse_mirror_on_close(const std::string& text) {
  if (text == "sync") return MirrorOnClose::kSync;
  if (text == "async") return MirrorOnClose::kAsync;
  if (text == "off") return MirrorOnClose::kOff;
  return make_error(EINVAL, "-o mirror_on_close=" + text + ": use sync, async or off");
}

SliceFs::SliceFs(MirrorEngine& engine, SliceFsOptions options)
    : engine_(engine), options_(options) {
  {
    MutexLock lock(protection_mu_);  // no other thread yet: for the analysis
    protection_ =
        R"({"state":"no UPS","reason":"no ups= option: pcimirror does not )"
        R"(hear of a power failure"})";
  }
  for (const SliceEntry& e : engine_.table().slices) {
    auto s = std::make_shared<Slice>();
    s->id = e.id;
    s->ino = ino_of(e.id);
    s->offset_bytes = e.offset_bytes;
    s->length_bytes = e.length_bytes;
    s->entry = e;
    init_chunks(*s);
    names_[e.name] = s->ino;
    slices_[s->ino] = std::move(s);
  }
}

SliceFs::~SliceFs() { stop_background(); }

bool SliceFs::write_behind_on() const {
  return options_.write_behind && !options_.read_only &&
         options_.mirror_on_close != MirrorOnClose::kOff &&
         engine_.superblock().mirror_copies > 1;
}

void SliceFs::init_chunks(Slice& s) const {
  if (!write_behind_on()) return;
  s.chunk_count =
      chunk_count(s.length_bytes, engine_.superblock().crc_chunk_bytes);
  s.chunk_state = std::make_unique<std::atomic<uint8_t>[]>(s.chunk_count);
  s.behind = WriteBehind{};
}

bool SliceFs::mark_written(Slice& s, uint64_t offset_bytes, uint64_t size,
                           bool ready_allowed) const {
  if (!s.chunk_state || size == 0) return false;
  const uint64_t chunk = engine_.superblock().crc_chunk_bytes;
  const uint64_t len = s.length_bytes;
  const uint64_t end = offset_bytes + size;
  bool ready = false;
  for (uint64_t k = offset_bytes / chunk; k < s.chunk_count && k * chunk < end;
       ++k) {
    uint8_t bits = kChunkDirty;
    if (ready_allowed && end >= std::min((k + 1) * chunk, len)) {
      bits |= kChunkReady;
      ready = true;
    }
    // Release: the chunk's new bytes are in memory before its mark.
    s.chunk_state[k].fetch_or(bits, std::memory_order_release);
  }
  return ready;
}

void SliceFs::settle_chunks(Slice& s) {
  const bool behind = s.behind.active();
  for (uint64_t k = 0; k < s.chunk_count; ++k)
    if (s.chunk_state[k].exchange(0, std::memory_order_acq_rel) && behind &&
        k < s.behind.written.size())
      s.behind.written[k] = 0;  // changed since write-behind wrote it
}

std::shared_ptr<SliceFs::Slice> SliceFs::get(uint64_t ino) const {
  ReaderLock lock(tree_mu_);
  auto it = slices_.find(ino);
  return it == slices_.end() ? nullptr : it->second;
}

bool SliceFs::dirty(const Slice& s) const {
  return s.write_seq.load() != s.synced_seq.load();
}

std::shared_ptr<SliceFs::Slice> SliceFs::find(const std::string& name) const {
  ReaderLock lock(tree_mu_);
  auto it = names_.find(name);
  return it == names_.end() ? nullptr : slices_.at(it->second);
}

Result<uint64_t> SliceFs::lookup(const std::string& name) const {
  ReaderLock lock(tree_mu_);
  auto it = names_.find(name);
  if (it == names_.end()) return make_error(ENOENT, "no slice named '" + name + "'");
  return it->second;
}

std::vector<std::pair<std::string, uint64_t>> SliceFs::list() const {
  ReaderLock lock(tree_mu_);
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [name, ino] : names_) out.emplace_back(name, ino);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  return out;
}

Result<struct stat> SliceFs::getattr(uint64_t ino) const {
  struct stat st {};
  st.st_ino = ino;
  st.st_blksize = kPreferredIoBytes;
  if (ino == kRootIno) {
    // Sticky and owned by the mount's owner: under default_permissions the
    // kernel then answers EPERM itself when anyone else sets a control
    // xattr (xattr_permission() in fs/xattr.c), and the sticky bit says
    // what the namespace is: nobody removes or renames entries.
    st.st_mode = S_IFDIR | S_ISVTX | (options_.read_only ? 0555 : 0755);
    st.st_uid = ::getuid();
    st.st_gid = ::getgid();
    st.st_nlink = 2;
    const auto t = to_timespec(engine_.superblock().format_time_ns);
    st.st_atim = st.st_mtim = st.st_ctim = t;
    return st;
  }
  auto s = get(ino);
  if (!s || s->removed) return make_error(ENOENT, "no such inode");
  // s->entry, not a local reference to it, which clang 14's analysis does
  // not follow here.
  ReaderLock lock(s->meta);
  st.st_mode = S_IFREG | (options_.umask ? (0666 & ~*options_.umask)
                                         : (s->entry.mode & 07777));
  st.st_nlink = 1;
  st.st_uid = options_.uid.value_or(s->entry.uid);
  st.st_gid = options_.gid.value_or(s->entry.gid);
  const uint64_t len = s->length_bytes;
  st.st_size = static_cast<off_t>(len);
  st.st_blocks = static_cast<blkcnt_t>((len + 511) / 512);
  st.st_atim = to_timespec(s->entry.atime_ns);
  st.st_mtim = to_timespec(s->entry.mtime_ns);
  st.st_ctim = to_timespec(s->entry.ctime_ns);
  return st;
}

Result<bool> SliceFs::open(uint64_t ino, int flags) {
  if (ino == kRootIno) return make_error(EISDIR, "is the root directory");
  auto s = get(ino);
  if (!s || s->removed) return make_error(ENOENT, "no such inode");
  const bool writes = (flags & O_ACCMODE) != O_RDONLY;
  if (options_.read_only && writes)
    return make_error(EROFS, "mounted read-only");
  if (writes) PCIM_TRY(refuse_power_fail("open for writing"));
  if (!writes || !(flags & O_TRUNC)) return false;
  PCIM_TRY(zero_fill(*s, 0));
  return true;
}

Status SliceFs::zero_fill(Slice& s, uint64_t from_bytes) {
  static const std::vector<std::byte> zeros(kZeroPieceBytes);
  {
    ReaderLock lock(s.content);
    if (s.removed) return make_error(ENOENT, "slice was removed");
    PCIM_TRY(refuse_power_fail("truncate"));
    const uint64_t len = s.length_bytes;
    if (from_bytes >= len) return {};
    for (uint64_t off = from_bytes; off < len;) {
      const size_t n =
          static_cast<size_t>(std::min<uint64_t>(kZeroPieceBytes, len - off));
      Status c =
          engine_.region().copy_to(s.offset_bytes + off, zeros.data(), n);
      if (!c.ok()) {
        // Part of the slice may have changed: it needs a mirror.
        s.write_seq.fetch_add(1, std::memory_order_release);
        mark_written(s, from_bytes, len - from_bytes, /*ready=*/false);
        return c;
      }
      off += n;
    }
    s.write_seq.fetch_add(1, std::memory_order_release);
    // Dirty, not ready: the writer that truncated rewrites these chunks
    // next, so write-behind waits for those writes (or the close).
    mark_written(s, from_bytes, len - from_bytes, /*ready=*/false);
  }
  WriterLock lock(s.meta);
  s.entry.mtime_ns = s.entry.ctime_ns = wall_clock_ns();
  return {};
}

Result<size_t> SliceFs::read(uint64_t ino, uint64_t offset_bytes, size_t size,
                             std::byte* dst) const {
  auto s = get(ino);
  if (!s || s->removed) return make_error(ENOENT, "no such inode");
  const uint64_t len = s->length_bytes;
  if (offset_bytes >= len) return size_t{0};
  size_t n = static_cast<size_t>(std::min<uint64_t>(size, len - offset_bytes));
  PCIM_TRY(engine_.region().copy_from(s->offset_bytes + offset_bytes, dst, n));
  return n;
}

Result<std::span<const std::byte>> SliceFs::read_view(uint64_t ino,
                                                      uint64_t offset_bytes,
                                                      size_t size) const {
  const Region& region = engine_.region();
  // A BAR needs an MMIO-aware copy and a DMA region has no mapping at all
  // (base() is null): both go through read() and copy_from.
  if (!region.pages_pinnable() || region.base() == nullptr)
    return make_error(EOPNOTSUPP,
                      "device memory needs an MMIO-aware or DMA copy");
  auto s = get(ino);
  if (!s || s->removed) return make_error(ENOENT, "no such inode");
  const uint64_t len = s->length_bytes;
  if (offset_bytes >= len) return std::span<const std::byte>();
  const size_t n =
      static_cast<size_t>(std::min<uint64_t>(size, len - offset_bytes));
  return std::span<const std::byte>(
      region.base() + s->offset_bytes + offset_bytes, n);
}

Result<size_t> SliceFs::write(uint64_t ino, uint64_t offset_bytes, size_t size,
                              const std::byte* src) {
  if (options_.read_only) return make_error(EROFS, "mounted read-only");
  auto s = get(ino);
  if (!s) return make_error(ENOENT, "no such inode");
  size_t n;
  bool ready = false;
  {
    ReaderLock lock(s->content);
    if (s->removed) return make_error(ENOENT, "slice was removed");
    // Under the content lock: see set_power_fail_read_only().
    PCIM_TRY(refuse_power_fail("write"));
    const uint64_t limit = s->length_bytes;
    if (offset_bytes >= limit)
      return make_error(ENOSPC, "write past the end of a slice");
    n = static_cast<size_t>(std::min<uint64_t>(size, limit - offset_bytes));
    Status c = engine_.region().copy_to(s->offset_bytes + offset_bytes, src, n);
    s->write_seq.fetch_add(1, std::memory_order_release);
    if (!c.ok()) {
      // A failed DMA write may have changed part of the range: it needs a
      // mirror, but write-behind must not take it as written.
      mark_written(*s, offset_bytes, n, /*ready=*/false);
      return c.take_error();
    }
    ready = mark_written(*s, offset_bytes, n);
  }
  {
    WriterLock lock(s->meta);
    s->entry.mtime_ns = s->entry.ctime_ns = wall_clock_ns();
  }
  if (ready && !s->behind_queued.exchange(true)) {
    MutexLock lock(behind_mu_);
    behind_queue_.push_back(ino);
    behind_cv_.NotifyOne();
  }
  return n;
}

Status SliceFs::settle(Slice& s, const Error* err) {
  s.syncing = false;
  s.failed = err != nullptr;
  {
    MutexLock lock(error_mu_);
    if (err) {
      last_sync_error_ = iso_time(wall_clock_ns()) + " " + err->what();
      last_sync_error_slice_ = s.id;
    } else if (last_sync_error_slice_ == s.id) {
      last_sync_error_.clear();
      last_sync_error_slice_ = 0;
    }
    if (err && failing_slices_.insert(s.id).second && options_.events) {
      std::string name;
      {
        ReaderLock meta(s.meta);
        name = s.entry.name;
      }
      options_.events->emit(
          EventType::kSyncFailed, err->what(),
          {{"slice", name}, {"errno", std::to_string(err->code)}});
    } else if (!err && failing_slices_.erase(s.id) && failing_slices_.empty() &&
               options_.events) {
      options_.events->emit(EventType::kSyncRecovered,
                            "every slice mirrors again");
    }
  }
  if (!err) return {};
  log_error(err->what());
  // Its errno reaches cp, dd, fsync and `pcimirror sync` as it is: ENOSPC
  // from a full device reads as such, not as EIO.
  return *err;
}

Status SliceFs::sync_slice(Slice& s) {
  WriterLock lock(s.content);
  if (s.removed) return make_error(ENOENT, "slice was removed");
  const uint64_t seq = s.write_seq.load(std::memory_order_acquire);
  s.syncing = true;
  s.progress_bytes = 0;
  if (s.chunk_state) settle_chunks(s);
  const WriteBehind behind = std::exchange(s.behind, WriteBehind{});
  s.behind_paused = false;
  auto r = engine_.sync(
      s.id,
      [&](SliceEntry& e) {
        ReaderLock meta(s.meta);
        e.atime_ns = s.entry.atime_ns;
        e.mtime_ns = s.entry.mtime_ns;
        e.ctime_ns = s.entry.ctime_ns;
      },
      [&](uint64_t done) {
        s.progress_bytes.store(done, std::memory_order_relaxed);
      },
      behind.active() ? &behind : nullptr);
  PCIM_TRY(settle(s, r.ok() ? nullptr : &r.error()));
  s.synced_seq.store(seq, std::memory_order_release);
  record_rate(r->bytes - std::min(r->bytes, r->behind_bytes), r->duration_ns);
  return {};
}

Status SliceFs::sync(uint64_t ino) {
  if (options_.read_only) return {};
  auto s = get(ino);
  if (!s) return make_error(ENOENT, "no such inode");
  return sync_slice(*s);
}

Status SliceFs::sync_batch(const std::vector<std::string>& names) {
  if (options_.read_only) return {};
  std::vector<std::shared_ptr<Slice>> group;
  {
    ReaderLock lock(tree_mu_);
    if (names.empty()) {
      for (auto& [ino, s] : slices_) group.push_back(s);
    } else {
      for (const std::string& n : names) {
        auto it = names_.find(n);
        if (it == names_.end()) return make_error(ENOENT, "no slice named '" + n + "'");
        group.push_back(slices_.at(it->second));
      }
    }
  }
  std::sort(group.begin(), group.end(), [](const auto& a, const auto& b) { return a->ino < b->ino; });
  group.erase(std::unique(group.begin(), group.end()), group.end());
  // Lock every slice in inode order (no deadlock with single syncs, which
  // take one lock), then one group commit. A slice removed meanwhile is
  // left out when all were asked for, and ENOENT when named.
  std::vector<std::unique_lock<WriterPriorityMutex>> locks;
  std::vector<std::shared_ptr<Slice>> committed;
  for (auto& s : group) {
    std::unique_lock lock(s->content);
    if (s->removed) {
      if (names.empty()) continue;
      return make_error(ENOENT, "slice '" + s->entry.name + "' was removed");
    }
    locks.push_back(std::move(lock));
    committed.push_back(s);
  }
  if (committed.empty()) return {};
  std::vector<uint64_t> batch;
  std::vector<uint64_t> seqs;
  std::map<uint64_t, Slice*> by_id;
  std::vector<WriteBehind> behinds(committed.size());
  std::vector<const WriteBehind*> behind_ptrs(committed.size());
  for (size_t i = 0; i < committed.size(); ++i) {
    Slice* s = committed[i].get();
    if (s->chunk_state) settle_chunks(*s);
    behinds[i] = std::exchange(s->behind, WriteBehind{});
    if (behinds[i].active()) behind_ptrs[i] = &behinds[i];
    s->behind_paused = false;
    seqs.push_back(s->write_seq.load(std::memory_order_acquire));
    batch.push_back(s->id);
    by_id[s->id] = s;
    s->syncing = true;
  }
  auto r = engine_.sync_batch(
      batch,
      [&](SliceEntry& e) {
        const Slice* s = by_id.at(e.id);
        ReaderLock meta(s->meta);
        e.atime_ns = s->entry.atime_ns;
        e.mtime_ns = s->entry.mtime_ns;
        e.ctime_ns = s->entry.ctime_ns;
      },
      behind_ptrs);
  if (r.ok()) {
    // One sample for the group: its shares add up to the batch's time.
    uint64_t bytes = 0, ns = 0;
    for (const SyncReport& one : *r) {
      bytes += one.bytes - std::min(one.bytes, one.behind_bytes);
      ns += one.duration_ns;
    }
    record_rate(bytes, ns);
  }
  Status st;
  for (size_t i = 0; i < committed.size(); ++i) {
    Status one = settle(*committed[i], r.ok() ? nullptr : &r.error());
    if (one.ok()) committed[i]->synced_seq.store(seqs[i], std::memory_order_release);
    else if (st.ok()) st = one;
  }
  return st;
}

Status SliceFs::close(uint64_t ino, bool wrote) {
  if (options_.read_only) return {};
  auto s = get(ino);
  if (!s || s->removed) return {};  // removed meanwhile: nothing to mirror
  if (!wrote || !dirty(*s)) return {};
  switch (options_.mirror_on_close) {
    case MirrorOnClose::kSync: return sync_slice(*s);
    case MirrorOnClose::kAsync: enqueue(ino); return {};
    case MirrorOnClose::kOff: return {};
  }
  return {};
}

std::vector<SliceFs::SyncFailure> SliceFs::sync_all_dirty() {
  std::vector<std::shared_ptr<Slice>> all;
  {
    ReaderLock lock(tree_mu_);
    for (auto& [ino, s] : slices_) all.push_back(s);
  }
  std::vector<SyncFailure> failed;
  if (options_.read_only) return failed;
  size_t refused = 0;
  for (auto& s : all) {
    if (!dirty(*s) || s->removed) continue;
    // Memory that was reset is never mirrored over the last good mirrors
    // (docs/DESIGN.md, "Never mirror garbage"): the refusal is the right
    // outcome, not a failure of the unmount.
    if (engine_.memory_state() == MemoryState::kMemoryReset) {
      ++refused;
      continue;
    }
    Status st = sync_slice(*s);
    if (st.ok() || s->removed) continue;  // removed meanwhile: nothing lost
    if (engine_.memory_state() == MemoryState::kMemoryReset) {
      ++refused;
      continue;
    }
    ReaderLock meta(s->meta);
    failed.push_back({s->entry.name, st.take_error()});
  }
  if (refused)
    log_error("final mirror at unmount refused for " + std::to_string(refused) +
              " slices: " + engine_.memory_message());
  return failed;
}

Status SliceFs::add_slice(const SliceSpec& spec) {
  if (options_.read_only) return make_error(EROFS, "mounted read-only");
  MutexLock control(control_mu_);
  SliceEntry e;
  e.name = spec.name;
  e.offset_bytes = spec.offset_bytes;
  e.length_bytes = spec.length_bytes;
  e.atime_ns = e.mtime_ns = e.ctime_ns = wall_clock_ns();
  // Checks name, window and space, allocates and commits: no namespace lock
  // is held, so reads and writes of other slices go on meanwhile.
  auto r = engine_.add_slice(e, /*mirror_now=*/false);
  if (!r.ok()) return r.take_error();
  auto s = std::make_shared<Slice>();
  s->id = r->slice_id;
  s->ino = ino_of(s->id);
  s->offset_bytes = e.offset_bytes;
  s->length_bytes = e.length_bytes;
  {
    // No other thread sees `s` yet: the lock is for the analysis.
    WriterLock meta(s->meta);
    s->entry = e;
    s->entry.id = s->id;
    s->entry.copies.clear();  // the engine's table holds the mirror state
  }
  init_chunks(*s);
  s->write_seq = 1;  // never mirrored: the next sync or unmount mirrors it
  WriterLock lock(tree_mu_);
  names_[e.name] = s->ino;
  slices_[s->ino] = std::move(s);
  return {};
}

Status SliceFs::remove_slice(const std::string& name) {
  if (options_.read_only) return make_error(EROFS, "mounted read-only");
  MutexLock control(control_mu_);
  auto s = find(name);
  if (!s) return make_error(ENOENT, "no slice named '" + name + "'");
  // Waits for writes and mirrors of this slice in flight, and keeps new
  // ones out until it is gone.
  WriterLock content(s->content);
  PCIM_TRY(engine_.remove_slice(s->id));
  s->removed = true;
  {
    MutexLock errors(error_mu_);
    failing_slices_.erase(s->id);
  }
  WriterLock lock(tree_mu_);
  names_.erase(name);
  slices_.erase(s->ino);
  return {};
}

Status SliceFs::rename_slice(const std::string& from, const std::string& to) {
  if (options_.read_only) return make_error(EROFS, "mounted read-only");
  PCIM_TRY(validate_new_name(to));
  MutexLock control(control_mu_);
  auto s = find(from);
  if (!s) return make_error(ENOENT, "no slice named '" + from + "'");
  if (from == to) return {};
  // The engine addresses the slice by ID, so a mirror in flight is not
  // redirected; the content lock still keeps writes, mirrors and
  // write-behind of the slice out while its label changes (the issue's
  // rule: rename and remove take it exclusively).
  WriterLock content(s->content);
  PCIM_TRY(engine_.rename_slice(s->id, to));
  {
    WriterLock meta(s->meta);
    s->entry.name = to;
    s->entry.ctime_ns = wall_clock_ns();
  }
  WriterLock lock(tree_mu_);
  names_.erase(from);
  names_[to] = s->ino;
  return {};
}

Result<struct stat> SliceFs::setattr(uint64_t ino, const struct stat& attr,
                                     int to_set) {
  auto s = get(ino);
  if (!s || s->removed)
    return make_error(ino == kRootIno ? EPERM : ENOENT, "setattr");
  if (options_.read_only) return make_error(EROFS, "mounted read-only");
  if (to_set & kSetSize) {
    PCIM_TRY(refuse_power_fail("truncate"));
    if (attr.st_size < 0) return make_error(EINVAL, "negative size");
    const uint64_t want = static_cast<uint64_t>(attr.st_size);
    if (want > s->length_bytes) {
      ReaderLock meta(s->meta);
      return make_error(EFBIG, "slice '" + s->entry.name +
                                   "' has a fixed size of " +
                                   std::to_string(s->length_bytes) + " bytes");
    }
    PCIM_TRY(zero_fill(*s, want));
  }
  const bool meta = to_set & (kSetMode | kSetUid | kSetGid);
  if (meta && (options_.uid || options_.gid || options_.umask))
    return make_error(EPERM, "owner and mode are set by mount options");
  // Ownership and permissions are metadata committed at once: under
  // control_mu_, so the slice cannot be removed or renamed meanwhile (a
  // stale descriptor's chmod must not land on a new slice of the same
  // name), and only the fields asked for reach the committed entry.
  // std::unique_lock, which the analysis does not follow: taken on one path
  // only, and control_mu_ guards no data.
  std::unique_lock<Mutex> control;
  if (meta) {
    control = std::unique_lock(control_mu_);
    if (s->removed) return make_error(ENOENT, "slice was removed");
  }
  SliceEntry before, after;
  {
    WriterLock lock(s->meta);
    SliceEntry& e = s->entry;
    before = e;
    const int64_t now = wall_clock_ns();
    if (to_set & kSetMode) e.mode = attr.st_mode & 07777;
    if (to_set & kSetUid) e.uid = attr.st_uid;
    if (to_set & kSetGid) e.gid = attr.st_gid;
    if (to_set & kSetAtime) e.atime_ns = from_timespec(attr.st_atim);
    if (to_set & kSetMtime) e.mtime_ns = from_timespec(attr.st_mtim);
    if (to_set & kSetAtimeNow) e.atime_ns = now;
    if (to_set & kSetMtimeNow) e.mtime_ns = now;
    e.ctime_ns = now;
    after = e;
  }
  if (meta) {
    Status c = engine_.commit_edit([&](SliceTable& t) -> Status {
      SliceEntry* e = t.find_id(s->id);
      if (!e) return make_error(ENOENT, "slice was removed");
      if (to_set & kSetMode) e->mode = after.mode;
      if (to_set & kSetUid) e->uid = after.uid;
      if (to_set & kSetGid) e->gid = after.gid;
      e->ctime_ns = after.ctime_ns;
      return {};
    });
    if (!c.ok()) {
      // Not on disk: the mount keeps showing what is.
      WriterLock lock(s->meta);
      s->entry.mode = before.mode;
      s->entry.uid = before.uid;
      s->entry.gid = before.gid;
      log_error(c.error().what());
      return c.take_error();  // its own errno (EIO, ENOSPC, EROFS, ...)
    }
  }
  return getattr(ino);
}

Result<std::string> SliceFs::getxattr(uint64_t ino, const std::string& name) const {
  // The root has no attributes of its own to read (ls, cp -a and rsync -a
  // probe ACLs and security labels on every inode: ENODATA, not ENOENT).
  const std::string prefix = "user.pcimirror.";
  if (name.rfind(prefix, 0) != 0) return make_error(ENODATA, "no such attribute");
  const std::string key = name.substr(prefix.size());
  if (ino == kRootIno) {
    // A fresh look for status (device config space and 64 canary bytes),
    // not the state the last mirror left.
    if (key == "memory_state" || key == "canary")
      (void)engine_.check_memory("for status");
    if (key == "memory_state")
      return std::string(to_string(engine_.memory_state()));
    if (key == "memory_message") return engine_.memory_message();
    if (key == "canary") return engine_.canary_state();
    if (key == "canary_offset") {
      SliceTable t = engine_.table();
      if (!t.canary) return make_error(ENODATA, "the volume has no canary");
      return std::to_string(t.canary->offset_bytes);
    }
    if (key == "last_sync_error") {
      MutexLock lock(error_mu_);
      return last_sync_error_;
    }
    if (key == "protection") {
      MutexLock lock(protection_mu_);
      return protection_;
    }
    return make_error(ENODATA, "no such attribute");
  }
  auto s = get(ino);
  if (!s || s->removed) return make_error(ENOENT, "no such inode");
  if (key == "state") {
    // The guard's state first: a lost device or reset memory is why every
    // mirror is refused, whatever the slice's own state.
    if (const MemoryState m = engine_.memory_state(); m != MemoryState::kOk)
      return std::string(to_string(m));
    return std::string(s->syncing ? "syncing" : s->failed ? "error" : dirty(*s) ? "dirty" : "clean");
  }
  if (key == "progress") {
    const uint64_t total = s->length_bytes;
    const uint64_t done = s->syncing ? s->progress_bytes.load() : total;
    return std::to_string(done) + "/" + std::to_string(total);
  }
  const MirrorCopy* c = nullptr;
  SliceTable t = engine_.table();
  if (const SliceEntry* e = t.find_id(s->id)) c = e->committed();
  if (key == "generation") return std::to_string(c ? c->generation : 0);
  if (key == "last_sync") return iso_time(c ? c->sync_time_ns : 0);
  if (key == "path") return std::string(to_string(c ? c->path : MirrorPath::kNone));
  if (key == "crc32c") {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%08x", c ? c->crc32c : 0u);
    return std::string(buf);
  }
  return make_error(ENODATA, "no such attribute");
}

bool SliceFs::all_clean() const {
  ReaderLock tree(tree_mu_);
  for (const auto& [ino, s] : slices_)
    if (!s->removed && (dirty(*s) || s->failed)) return false;
  return true;
}

Status SliceFs::accept_memory(const std::string& why) {
  MutexLock control(control_mu_);
  PCIM_TRY(engine_.renew_canary(why));
  ReaderLock tree(tree_mu_);
  for (auto& [ino, s] : slices_)
    s->write_seq.fetch_add(1, std::memory_order_acq_rel);
  return {};
}

Status SliceFs::set_canary(uint64_t offset_bytes) {
  MutexLock control(control_mu_);
  return engine_.set_canary(offset_bytes);
}

SliceFs::Space SliceFs::statfs() const {
  const Superblock& sb = engine_.superblock();
  SliceTable t = engine_.table();
  uint64_t free_sectors = 0;
  if (auto a = Allocator::from_table(sb, t); a.ok()) free_sectors = a->free_sectors();
  ReaderLock lock(tree_mu_);
  return Space{sb.data_sectors * kSectorBytes, free_sectors * kSectorBytes,
               kBlockBytes, slices_.size()};
}

void SliceFs::enqueue(uint64_t ino) {
  MutexLock lock(queue_mu_);
  if (std::find(queue_.begin(), queue_.end(), ino) == queue_.end()) queue_.push_back(ino);
  queue_cv_.NotifyOne();
}

void SliceFs::write_behind(Slice& s) {
  s.behind_queued.store(false);  // marks from now on queue the slice again
  ReaderLock content(s.content);
  if (s.removed || !s.chunk_state || s.behind_paused) return;
  const uint64_t chunk = engine_.superblock().crc_chunk_bytes;
  const uint64_t len = s.length_bytes;
  for (uint64_t k = 0; k < s.chunk_count;) {
    if (!(s.chunk_state[k].load(std::memory_order_relaxed) & kChunkReady)) {
      ++k;
      continue;
    }
    // Claim a run of ready chunks: clear each mark before its bytes are
    // read (acquire pairs with the writer's release), so a write that lands
    // meanwhile marks the chunk again and the mirror at close rewrites it.
    uint64_t end = k;
    while (end < s.chunk_count && end - k < kBehindRunChunks &&
           (s.chunk_state[end].load(std::memory_order_relaxed) & kChunkReady)) {
      s.chunk_state[end].exchange(0, std::memory_order_acq_rel);
      ++end;
    }
    const auto started = std::chrono::steady_clock::now();
    Status st = engine_.write_behind(s.id, k, end - k, s.behind);
    if (!st.ok() && st.error().code == ESTALE) {
      s.behind = WriteBehind{};  // a mirror was committed meanwhile: start over
      st = engine_.write_behind(s.id, k, end - k, s.behind);
    }
    if (!st.ok()) {
      // Whatever failed, the claimed chunks are not on the device as they
      // are now: clear their marks, so the mirror at close writes them (and
      // reports any error to the caller of close or fsync). A mark left
      // from an earlier run would keep the chunk's old bytes in a mirror
      // whose CRCs match them.
      for (uint64_t j = k; j < end && j < s.behind.written.size(); ++j)
        s.behind.written[j] = 0;
      if (st.error().code != ENOENT) {
        log_warning(st.error().message +
                    "; write-behind paused until the next mirror");
        s.behind_paused = true;
      }
      return;
    }
    const uint64_t wrote = std::min(end * chunk, len) - k * chunk;
    behind_bytes_.fetch_add(wrote, std::memory_order_relaxed);
    // Counted in the measured rate too: with write-behind, the mirror at
    // close may write little or nothing itself.
    record_rate(wrote, static_cast<uint64_t>(
                           std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now() - started)
                               .count()));
    k = end;
  }
}

void SliceFs::behind_worker() {
  MutexLock lock(behind_mu_);
  while (true) {
    while (!behind_stopping_ && behind_queue_.empty())
      behind_cv_.Wait(behind_mu_);
    if (behind_stopping_) return;
    const uint64_t ino = behind_queue_.front();
    behind_queue_.pop_front();
    lock.Unlock();
    if (auto s = get(ino)) write_behind(*s);
    lock.Lock();
  }
}

void SliceFs::set_power_fail_read_only(bool on, const std::string& why) {
  {
    MutexLock lock(protection_mu_);
    power_fail_why_ = why;
  }
  power_fail_logged_.store(false);
  if (power_fail_ro_.exchange(on) == on) return;
  if (on)
    log_warning(
        "power failure: writes through the mount now fail with "
        "EROFS (" +
        why + "); reads and mirrors go on");
  else
    log_info("power is back: writes through the mount are accepted again (" +
             why + ")");
}

Status SliceFs::refuse_power_fail(const char* what) {
  if (!power_fail_ro_.load()) return {};
  std::string why;
  {
    MutexLock lock(protection_mu_);
    why = power_fail_why_;
  }
  const std::string msg = std::string(what) +
                          " refused with EROFS after a power failure (" + why +
                          "); writes are accepted again once the UPS is "
                          "back online (OL)";
  if (!power_fail_logged_.exchange(true)) log_warning(msg);
  return make_error(EROFS, msg);
}

void SliceFs::record_rate(uint64_t bytes, uint64_t ns) {
  if (bytes == 0 || ns == 0) return;
  MutexLock lock(rate_mu_);
  rate_samples_.emplace_back(bytes, ns);
  while (rate_samples_.size() > kRateSamples) rate_samples_.pop_front();
}

double SliceFs::recent_mb_per_s() const {
  MutexLock lock(rate_mu_);
  uint64_t bytes = 0, ns = 0;
  for (const auto& [b, n] : rate_samples_) {
    bytes += b;
    ns += n;
  }
  return ns ? static_cast<double>(bytes) * 1e3 / static_cast<double>(ns) : 0.0;
}

uint64_t SliceFs::save_bytes() const {
  ReaderLock lock(tree_mu_);
  uint64_t total = 0;
  for (const auto& [ino, s] : slices_)
    if (!s->removed && (!options_.host_only_writes || dirty(*s)))
      total += s->length_bytes;
  return total;
}

std::string SliceFs::last_sync_error() const {
  MutexLock lock(error_mu_);
  return last_sync_error_;
}

void SliceFs::set_protection(std::string json) {
  MutexLock lock(protection_mu_);
  protection_ = std::move(json);
}

void SliceFs::start_background() {
  if (write_behind_on() && !behind_thread_.joinable()) {
    MutexLock lock(behind_mu_);  // no other thread yet: for the analysis
    behind_stopping_ = false;
    behind_thread_ = std::thread([this] { behind_worker(); });
  }
  if (worker_.joinable()) return;
  if (options_.interval_ms == 0 && options_.mirror_on_close != MirrorOnClose::kAsync)
    return;
  MutexLock lock(queue_mu_);  // no other thread yet: for the analysis
  stopping_ = false;
  worker_ = std::thread([this] { worker(); });
}

void SliceFs::stop_background() {
  {
    MutexLock lock(behind_mu_);
    behind_stopping_ = true;
  }
  behind_cv_.NotifyAll();
  if (behind_thread_.joinable()) behind_thread_.join();
  {
    MutexLock lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.NotifyAll();
  if (worker_.joinable()) worker_.join();
}

void SliceFs::worker() {
  using clock = std::chrono::steady_clock;
  const auto period = std::chrono::milliseconds(options_.interval_ms);
  auto next = clock::now() + period;
  MutexLock lock(queue_mu_);
  while (!stopping_) {
    while (!stopping_ && queue_.empty()) {
      if (!options_.interval_ms)
        queue_cv_.Wait(queue_mu_);
      else if (queue_cv_.WaitUntil(queue_mu_, next) == std::cv_status::timeout)
        break;
    }
    while (!queue_.empty() && !stopping_) {
      const uint64_t ino = queue_.front();
      queue_.pop_front();
      lock.Unlock();
      if (auto s = get(ino); s && dirty(*s)) (void)sync_slice(*s);
      lock.Lock();
    }
    if (options_.interval_ms && clock::now() >= next && !stopping_) {
      lock.Unlock();
      std::vector<std::shared_ptr<Slice>> all;
      {
        ReaderLock tree(tree_mu_);
        for (auto& [ino, s] : slices_) all.push_back(s);
      }
      for (auto& s : all) {
        // Reset memory stays refused until restore or accept (the guard
        // logged it once); a lost device is asked again by the next tick.
        if (engine_.memory_state() == MemoryState::kMemoryReset) break;
        if (!options_.host_only_writes || dirty(*s)) (void)sync_slice(*s);
        if (engine_.memory_state() != MemoryState::kOk) break;
      }
      next = clock::now() + period;
      lock.Lock();
    }
  }
}

}  // namespace pcimirror
