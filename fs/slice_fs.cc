#include "fs/slice_fs.h"

#include <fcntl.h>

#include <chrono>
#include <mutex>

#include "fs/allocator.h"
#include "io/log.h"

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
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

SliceFs::SliceFs(MirrorEngine& engine, SliceFsOptions options)
    : engine_(engine), options_(options) {
  for (const SliceEntry& e : engine_.table().slices) {
    auto s = std::make_unique<Slice>();
    s->entry = e;
    slices_.push_back(std::move(s));
  }
}

SliceFs::Slice* SliceFs::get(uint64_t ino) const {
  if (ino < 2 || ino - 2 >= slices_.size()) return nullptr;
  return slices_[ino - 2].get();
}

Result<uint64_t> SliceFs::lookup(const std::string& name) const {
  for (size_t i = 0; i < slices_.size(); ++i)
    if (slices_[i]->entry.name == name) return uint64_t{i + 2};
  return make_error(ENOENT, "no slice named '" + name + "'");
}

std::vector<std::pair<std::string, uint64_t>> SliceFs::list() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (size_t i = 0; i < slices_.size(); ++i)
    out.emplace_back(slices_[i]->entry.name, i + 2);
  return out;
}

Result<struct stat> SliceFs::getattr(uint64_t ino) const {
  struct stat st {};
  st.st_ino = ino;
  st.st_blksize = kPreferredIoBytes;
  if (ino == kRootIno) {
    st.st_mode = S_IFDIR | (options_.read_only ? 0555 : 0755);
    st.st_nlink = 2;
    const auto t = to_timespec(engine_.superblock().format_time_ns);
    st.st_atim = st.st_mtim = st.st_ctim = t;
    return st;
  }
  Slice* s = get(ino);
  if (!s) return make_error(ENOENT, "no such inode");
  std::shared_lock lock(meta_mu_);
  const SliceEntry& e = s->entry;
  st.st_mode = S_IFREG | (options_.umask ? (0666 & ~*options_.umask) : (e.mode & 07777));
  st.st_nlink = 1;
  st.st_uid = options_.uid.value_or(e.uid);
  st.st_gid = options_.gid.value_or(e.gid);
  st.st_size = static_cast<off_t>(e.length_bytes);
  st.st_blocks = static_cast<blkcnt_t>((e.length_bytes + 511) / 512);
  st.st_atim = to_timespec(e.atime_ns);
  st.st_mtim = to_timespec(e.mtime_ns);
  st.st_ctim = to_timespec(e.ctime_ns);
  return st;
}

Status SliceFs::open(uint64_t ino, int flags) const {
  if (ino == kRootIno) return make_error(EISDIR, "is the root directory");
  if (!get(ino)) return make_error(ENOENT, "no such inode");
  if (options_.read_only && (flags & O_ACCMODE) != O_RDONLY)
    return make_error(EROFS, "mounted read-only");
  return {};
}

Result<size_t> SliceFs::read(uint64_t ino, uint64_t offset_bytes, size_t size,
                             std::byte* dst) const {
  Slice* s = get(ino);
  if (!s) return make_error(ENOENT, "no such inode");
  const uint64_t len = s->entry.length_bytes;  // immutable while mounted
  if (offset_bytes >= len) return size_t{0};
  size_t n = static_cast<size_t>(std::min<uint64_t>(size, len - offset_bytes));
  engine_.region().copy_from(s->entry.offset_bytes + offset_bytes, dst, n);
  return n;
}

Result<size_t> SliceFs::write(uint64_t ino, uint64_t offset_bytes, size_t size,
                              const std::byte* src) {
  if (options_.read_only) return make_error(EROFS, "mounted read-only");
  Slice* s = get(ino);
  if (!s) return make_error(ENOENT, "no such inode");
  const uint64_t len = s->entry.length_bytes;
  if (offset_bytes >= len)
    return make_error(ENOSPC, "write past the end of slice '" +
                                  s->entry.name + "'");
  size_t n = static_cast<size_t>(std::min<uint64_t>(size, len - offset_bytes));
  {
    std::shared_lock lock(s->content);
    engine_.region().copy_to(s->entry.offset_bytes + offset_bytes, src, n);
    s->write_seq.fetch_add(1, std::memory_order_release);
  }
  {
    std::unique_lock lock(meta_mu_);
    s->entry.mtime_ns = s->entry.ctime_ns = now_ns();
  }
  return n;
}

Status SliceFs::sync_slice(Slice& s) {
  std::unique_lock lock(s.content);
  const uint64_t seq = s.write_seq.load(std::memory_order_acquire);
  auto r = engine_.sync(s.entry.name, [&](SliceEntry& e) {
    std::shared_lock meta(meta_mu_);
    e.atime_ns = s.entry.atime_ns;
    e.mtime_ns = s.entry.mtime_ns;
    e.ctime_ns = s.entry.ctime_ns;
  });
  if (!r.ok()) {
    log_error(r.error().what());
    return make_error(EIO, r.error().message);
  }
  s.synced_seq.store(seq, std::memory_order_release);
  return {};
}

Status SliceFs::sync(uint64_t ino) {
  if (options_.read_only) return {};
  Slice* s = get(ino);
  if (!s) return make_error(ENOENT, "no such inode");
  return sync_slice(*s);
}

Status SliceFs::sync_if_dirty(uint64_t ino) {
  Slice* s = get(ino);
  if (!s) return make_error(ENOENT, "no such inode");
  if (s->write_seq.load() == s->synced_seq.load()) return {};
  return sync_slice(*s);
}

void SliceFs::sync_all_dirty() {
  for (auto& s : slices_)
    if (s->write_seq.load() != s->synced_seq.load()) (void)sync_slice(*s);
}

Result<struct stat> SliceFs::setattr(uint64_t ino, const struct stat& attr,
                                     int to_set) {
  Slice* s = get(ino);
  if (!s) return make_error(ino == kRootIno ? EPERM : ENOENT, "setattr");
  if (options_.read_only) return make_error(EROFS, "mounted read-only");
  if ((to_set & kSetSize) &&
      static_cast<uint64_t>(attr.st_size) > s->entry.length_bytes)
    return make_error(EFBIG, "slice '" + s->entry.name + "' has a fixed size");
  const bool meta = to_set & (kSetMode | kSetUid | kSetGid);
  if (meta && (options_.uid || options_.gid || options_.umask))
    return make_error(EPERM, "owner and mode are set by mount options");
  {
    std::unique_lock lock(meta_mu_);
    SliceEntry& e = s->entry;
    const int64_t now = now_ns();
    if (to_set & kSetMode) e.mode = attr.st_mode & 07777;
    if (to_set & kSetUid) e.uid = attr.st_uid;
    if (to_set & kSetGid) e.gid = attr.st_gid;
    if (to_set & kSetAtime) e.atime_ns = from_timespec(attr.st_atim);
    if (to_set & kSetMtime) e.mtime_ns = from_timespec(attr.st_mtim);
    if (to_set & kSetAtimeNow) e.atime_ns = now;
    if (to_set & kSetMtimeNow) e.mtime_ns = now;
    e.ctime_ns = now;
  }
  if (meta) {
    // Ownership and permissions are metadata: commit them now.
    SliceEntry snapshot;
    {
      std::shared_lock lock(meta_mu_);
      snapshot = s->entry;
    }
    Status c = engine_.commit_edit([&](SliceTable& t) -> Status {
      for (SliceEntry& e : t.slices)
        if (e.name == snapshot.name) {
          e.mode = snapshot.mode;
          e.uid = snapshot.uid;
          e.gid = snapshot.gid;
          e.ctime_ns = snapshot.ctime_ns;
        }
      return {};
    });
    if (!c.ok()) {
      log_error(c.error().what());
      return make_error(EIO, c.error().message);
    }
  }
  return getattr(ino);
}

SliceFs::Space SliceFs::statfs() const {
  const Superblock& sb = engine_.superblock();
  SliceTable t = engine_.table();
  uint64_t free_sectors = 0;
  if (auto a = Allocator::from_table(sb, t); a.ok()) free_sectors = a->free_sectors();
  return Space{sb.data_sectors * kSectorBytes, free_sectors * kSectorBytes,
               kBlockBytes, slices_.size()};
}

}  // namespace pcimirror
