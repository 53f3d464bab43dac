// libfuse3 low-level handlers (see libfuse's example/passthrough_hp.cc for the
// shape). Each handler unpacks the request, calls SliceFs, and answers with
// fuse_reply_* or an errno. No exception crosses a callback: SliceFs does not
// throw, and the one allocation here is guarded.
#define FUSE_USE_VERSION 312
#include "fs/fuse_ops.h"

#include <fuse_lowlevel.h>

#include <linux/fs.h>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "io/log.h"

namespace pcimirror {
namespace {

constexpr double kAttrTimeout = 1.0;

struct Handle {
  bool wrote = false;
};

// Session state, passed as userdata (no globals).
struct Context {
  SliceFs* fs;
  uint32_t max_write_bytes;
};

SliceFs& fs_of(fuse_req_t req) {
  return *static_cast<Context*>(fuse_req_userdata(req))->fs;
}

void reply_attr(fuse_req_t req, const Result<struct stat>& st) {
  if (!st.ok()) {
    fuse_reply_err(req, st.error().code);
    return;
  }
  fuse_reply_attr(req, &*st, kAttrTimeout);
}

// The entry (inode and attributes) lookup and create answer with.
Result<fuse_entry_param> entry_of(SliceFs& fs, uint64_t ino) {
  auto st = fs.getattr(ino);
  if (!st.ok()) return st.take_error();
  fuse_entry_param e{};
  e.ino = ino;
  e.attr = *st;
  e.attr_timeout = kAttrTimeout;
  e.entry_timeout = kAttrTimeout;
  return e;
}

void op_init(void* userdata, fuse_conn_info* conn) {
  // Large direct writes: libfuse derives max_pages from max_write.
  conn->max_write = static_cast<Context*>(userdata)->max_write_bytes;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
    conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

void op_destroy(void* userdata) {
  static_cast<Context*>(userdata)->fs->sync_all_dirty();
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != kRootIno) return (void)fuse_reply_err(req, ENOTDIR);
  SliceFs& fs = fs_of(req);
  auto ino = fs.lookup(name);
  if (!ino.ok()) return (void)fuse_reply_err(req, ENOENT);
  auto e = entry_of(fs, *ino);
  if (!e.ok()) return (void)fuse_reply_err(req, e.error().code);
  fuse_reply_entry(req, &*e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  reply_attr(req, fs_of(req).getattr(ino));
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                fuse_file_info*) {
  reply_attr(req, fs_of(req).setattr(ino, *attr, to_set));
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                fuse_file_info*) {
  if (ino != kRootIno) return (void)fuse_reply_err(req, ENOTDIR);
  auto entries = fs_of(req).list();
  entries.insert(entries.begin(), {{".", kRootIno}, {"..", kRootIno}});
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < entries.size(); ++i) {
    struct stat st {};
    st.st_ino = entries[i].second;
    st.st_mode = i < 2 ? S_IFDIR : S_IFREG;
    size_t n = fuse_add_direntry(req, buf.data() + used, size - used,
                                 entries[i].first.c_str(), &st,
                                 static_cast<off_t>(i + 1));
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void reply_open(fuse_req_t req, fuse_file_info* fi, const fuse_entry_param* e);

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Status s = fs_of(req).open(ino, fi->flags);
  if (!s.ok()) return (void)fuse_reply_err(req, s.error().code);
  reply_open(req, fi, nullptr);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
             fuse_file_info*) {
  // Plain memory goes out straight from the region: one copy, by the kernel.
  auto view = fs_of(req).read_view(ino, static_cast<uint64_t>(off), size);
  if (view.ok())
    return (void)fuse_reply_buf(
        req, reinterpret_cast<const char*>(view->data()), view->size());
  if (view.error().code != EOPNOTSUPP)
    return (void)fuse_reply_err(req, view.error().code);
  // A BAR: an MMIO-aware copy into a buffer first.
  thread_local std::vector<std::byte> buf;
  if (buf.size() < size) {
    try {
      buf.resize(size);
    } catch (const std::bad_alloc&) {
      return (void)fuse_reply_err(req, ENOMEM);
    }
  }
  auto n = fs_of(req).read(ino, static_cast<uint64_t>(off), size, buf.data());
  if (!n.ok()) return (void)fuse_reply_err(req, n.error().code);
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), *n);
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size,
              off_t off, fuse_file_info* fi) {
  auto n = fs_of(req).write(ino, static_cast<uint64_t>(off), size,
                            reinterpret_cast<const std::byte*>(data));
  if (!n.ok()) return (void)fuse_reply_err(req, n.error().code);
  reinterpret_cast<Handle*>(fi->fh)->wrote = true;
  fuse_reply_write(req, *n);
}

// close(2): commits a new slice, and mirrors a written one per
// mirror_on_close before close returns, so cp and dd report failures.
// Errors reach the caller as EIO.
void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* h = reinterpret_cast<Handle*>(fi->fh);
  Status s = fs_of(req).close(ino, h && h->wrote);
  if (!s.ok()) return (void)fuse_reply_err(req, EIO);
  if (h) h->wrote = false;
  fuse_reply_err(req, 0);
}

void reply_open(fuse_req_t req, fuse_file_info* fi, const fuse_entry_param* e) {
  auto* h = new (std::nothrow) Handle();
  if (!h) return (void)fuse_reply_err(req, ENOMEM);
  fi->fh = reinterpret_cast<uint64_t>(h);
  fi->direct_io = 1;  // device memory changes behind our back: no page cache
  fi->keep_cache = 0;
  int r = e ? fuse_reply_create(req, e, fi) : fuse_reply_open(req, fi);
  if (r == -ENOENT) delete h;  // interrupted
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name,
               mode_t mode, fuse_file_info* fi) {
  if (parent != kRootIno) return (void)fuse_reply_err(req, ENOTDIR);
  SliceFs& fs = fs_of(req);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  auto ino = fs.create(name, mode, ctx->uid, ctx->gid);
  if (!ino.ok()) return (void)fuse_reply_err(req, ino.error().code);
  auto e = entry_of(fs, *ino);
  if (!e.ok()) return (void)fuse_reply_err(req, e.error().code);
  reply_open(req, fi, &*e);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != kRootIno) return (void)fuse_reply_err(req, ENOTDIR);
  Status s = fs_of(req).unlink(name);
  fuse_reply_err(req, s.ok() ? 0 : s.error().code);
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name,
               fuse_ino_t newparent, const char* newname, unsigned int flags) {
  if (parent != kRootIno || newparent != kRootIno)
    return (void)fuse_reply_err(req, ENOTDIR);
  if (flags & RENAME_EXCHANGE) return (void)fuse_reply_err(req, EINVAL);
  Status s = fs_of(req).rename(name, newname, flags & RENAME_NOREPLACE);
  fuse_reply_err(req, s.ok() ? 0 : s.error().code);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto v = fs_of(req).getxattr(ino, name);
  if (!v.ok()) return (void)fuse_reply_err(req, v.error().code);
  if (size == 0) return (void)fuse_reply_xattr(req, v->size());
  if (size < v->size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, v->data(), v->size());
}

// `pcimirror sync` sets user.pcimirror.sync on the root: a group commit of
// the slices named in the value (newline-separated), or of all.
void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name,
                 const char* value, size_t size, int) {
  if (ino != kRootIno || std::strcmp(name, kSyncXattr) != 0)
    return (void)fuse_reply_err(req, ENOTSUP);
  std::vector<std::string> names;
  std::string cur;
  for (size_t i = 0; i <= size; ++i) {
    if (i == size || value[i] == '\n') {
      if (!cur.empty()) names.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(value[i]);
    }
  }
  Status s = fs_of(req).sync_batch(names);
  fuse_reply_err(req, s.ok() ? 0 : s.error().code);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  if (ino == kRootIno) return (void)fuse_reply_xattr(req, 0);
  std::string names;
  for (const char* n : kXattrNames) names.append(n).push_back('\0');
  if (size == 0) return (void)fuse_reply_xattr(req, names.size());
  if (size < names.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, names.data(), names.size());
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info* fi) {
  Status s = fs_of(req).sync(ino);
  if (!s.ok()) return (void)fuse_reply_err(req, EIO);
  if (fi && fi->fh) reinterpret_cast<Handle*>(fi->fh)->wrote = false;
  fuse_reply_err(req, 0);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<Handle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  auto sp = fs_of(req).statfs();
  struct statvfs v {};
  v.f_bsize = sp.block_bytes;
  v.f_frsize = sp.block_bytes;
  v.f_blocks = sp.total_bytes / sp.block_bytes;
  v.f_bfree = sp.free_bytes / sp.block_bytes;
  v.f_bavail = v.f_bfree;
  v.f_files = sp.files;
  v.f_ffree = 0;
  v.f_namemax = 255;
  fuse_reply_statfs(req, &v);
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.destroy = op_destroy;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readdir = op_readdir;
  ops.open = op_open;
  ops.create = op_create;
  ops.unlink = op_unlink;
  ops.rename = op_rename;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.setxattr = op_setxattr;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.fsync = op_fsync;
  ops.release = op_release;
  ops.statfs = op_statfs;
  return ops;
}

// Owner of a fuse_session: unmounts and destroys it.
class FuseSession {
 public:
  explicit FuseSession(fuse_session* se) : se_(se) {}
  FuseSession(const FuseSession&) = delete;
  FuseSession& operator=(const FuseSession&) = delete;
  ~FuseSession() {
    if (!se_) return;
    if (signals_) fuse_remove_signal_handlers(se_);
    if (mounted_) fuse_session_unmount(se_);
    fuse_session_destroy(se_);
  }
  fuse_session* get() const { return se_; }
  void set_mounted() { mounted_ = true; }
  void set_signals() { signals_ = true; }

 private:
  fuse_session* se_;
  bool mounted_ = false;
  bool signals_ = false;
};

}  // namespace

Status serve_fuse(SliceFs& fs, const FuseMountOptions& opts,
                  const std::function<void()>& on_mounted,
                  const std::function<void()>& on_stopping) {
  std::vector<std::string> words = {
      "pcimirror", "-o",
      "fsname=" + opts.fsname + ",subtype=pcimirror,nosuid,nodev,noexec" +
          (opts.read_only ? ",ro" : "") +
          (opts.allow_other ? ",allow_other" : "") +
          (opts.default_permissions ? ",default_permissions" : "")};
  if (opts.debug) words.push_back("-d");
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  static const fuse_lowlevel_ops ops = make_ops();
  Context ctx{&fs, opts.max_write_bytes};
  FuseSession se(fuse_session_new(&args, &ops, sizeof(ops), &ctx));
  fuse_opt_free_args(&args);  // fuse_session_new parsed a copy it allocated
  if (!se.get())
    return make_error(EINVAL, "cannot create a FUSE session for " +
                                  opts.mountpoint + " (bad mount options?)");
  if (fuse_set_signal_handlers(se.get()) != 0)
    return make_error(EIO, "cannot install signal handlers");
  se.set_signals();
  if (fuse_session_mount(se.get(), opts.mountpoint.c_str()) != 0)
    return make_error(EIO, "cannot mount on " + opts.mountpoint +
                               " (does it exist, is /dev/fuse available, is "
                               "something already mounted there?)");
  se.set_mounted();
  on_mounted();
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_idle_threads(cfg, opts.max_idle_threads);
  int r = fuse_session_loop_mt(se.get(), cfg);
  fuse_loop_cfg_destroy(cfg);
  if (on_stopping) on_stopping();
  // A final mirror of every dirty slice while the mount still exists (a
  // signal ended the loop) or just after (umount did).
  fs.sync_all_dirty();
  if (r < 0) return sys_error(-r, "FUSE loop on " + opts.mountpoint + " failed");
  return {};
}

}  // namespace pcimirror
