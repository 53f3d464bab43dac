// libfuse3 low-level handlers (see libfuse's example/passthrough_hp.cc for the
// shape). Each handler unpacks the request, calls SliceFs, and answers with
// fuse_reply_* or an errno. No exception crosses a callback: SliceFs does not
// throw, and the one allocation here is guarded.
#define FUSE_USE_VERSION 312
#include "fs/fuse_ops.h"

#include <fuse_lowlevel.h>
#include <linux/fs.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "fs/control_xattr.h"
#include "io/log.h"
#include "io/mutex.h"
#include "io/thread_annotations.h"

namespace pcimirror {
namespace {

constexpr double kAttrTimeout = 1.0;
// Names are never cached: an online `pcimirror slice rm|rename` shows on
// the mount at once (a lookup per path walk is the price).
constexpr double kEntryTimeout = 0.0;

struct Handle {
  bool writable = false;  // opened for writing
  // Set by writes and ftruncate on any FUSE thread (a dup'd descriptor
  // shares the handle); close and fsync take it with exchange() before they
  // mirror.
  std::atomic<bool> wrote{false};
  // Set by open(O_TRUNC), whose zero-fill is mirrored by the first close
  // after a write or, failing that, at release. Not at the first close:
  // dd and shells close a duplicate of the new descriptor before writing,
  // and a mirror of the zeros then would cost a mirror and a generation.
  std::atomic<bool> truncated{false};
};

// Session state, passed as userdata (no globals).
struct Context {
  SliceFs* fs;
  uint32_t max_write_bytes;
  std::string mountpoint;
  uid_t owner_uid;  // who mounted: may control the volume, as root may
  Mutex mu;
  // The last refused control request or failed mirror.
  std::string last_error GUARDED_BY(mu);
  // Guarded by final_mu (held across the I/O, so not mu): the final mirror
  // of every dirty slice ran (once per session: at FUSE_DESTROY or after the
  // loop, whichever comes first), and the slices whose mirror failed then.
  Mutex final_mu;
  bool final_done GUARDED_BY(final_mu) = false;
  std::vector<SliceFs::SyncFailure> final_failures GUARDED_BY(final_mu);
};

// The errno a FUSE reply can carry: the error's own (ENOSPC, EROFS, ...),
// EIO if it is out of range.
// ENOSYS never: the kernel would take it as "not implemented" and stop
// sending flush, fsync or setxattr for the rest of the mount
// (fc->no_flush etc. in fs/fuse/file.c), so closes would stop mirroring.
int reply_errno(const Error& e) {
  return e.code > 0 && e.code < 4096 && e.code != ENOSYS ? e.code : EIO;
}

// A failed mirror requested by a close or fsync: logged by SliceFs; kept as
// the root's user.pcimirror.last_error for `pcimirror sync` and `umount`.
void record_failure(Context& ctx, const Error& e) {
  std::string what = e.what();
  MutexLock lock(ctx.mu);
  ctx.last_error.swap(what);
}

// The final mirror of every dirty slice, once per session.
void final_mirror(Context& ctx) {
  MutexLock lock(ctx.final_mu);
  if (ctx.final_done) return;
  ctx.final_done = true;
  ctx.final_failures = ctx.fs->sync_all_dirty();
}

Context& ctx_of(fuse_req_t req) {
  return *static_cast<Context*>(fuse_req_userdata(req));
}
SliceFs& fs_of(fuse_req_t req) { return *ctx_of(req).fs; }

// Root and the mount's owner control the volume (syncs, slice changes).
bool may_control(fuse_req_t req) {
  const uid_t uid = fuse_req_ctx(req)->uid;
  return uid == 0 || uid == ctx_of(req).owner_uid;
}

// A namespace change through the mount: refused, with one log line naming
// the command that does it (contract: the mount never creates, moves or
// deletes a slice).
void refuse(fuse_req_t req, const char* op, const std::string& name,
            const std::string& remedy) {
  log_warning(std::string(op) + " of '" + name + "' on " +
              ctx_of(req).mountpoint +
              " refused (EPERM): slices are fixed windows of device memory, "
              "declared with pcimirror slice; " +
              remedy);
  fuse_reply_err(req, EPERM);
}

void reply_attr(fuse_req_t req, const Result<struct stat>& st) {
  if (!st.ok()) {
    fuse_reply_err(req, reply_errno(st.error()));
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
  e.entry_timeout = kEntryTimeout;
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
  // No exception escapes: a bad_alloc only loses the failure list, which
  // serve_fuse then reports as a failure of unknown slices.
  try {
    final_mirror(*static_cast<Context*>(userdata));
  } catch (const std::exception& e) {
    log_error(std::string("final mirror: ") + e.what());
  }
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
                fuse_file_info* fi) {
  SliceFs& fs = fs_of(req);
  auto st = fs.setattr(ino, *attr, to_set);
  if (st.ok() && (to_set & FUSE_SET_ATTR_SIZE)) {
    // A truncation wrote zeros: ftruncate's descriptor mirrors them at
    // close; truncate(2) has none, so it mirrors now, as a close would.
    if (fi && fi->fh) {
      reinterpret_cast<Handle*>(fi->fh)->wrote = true;
    } else if (Status c = fs.close(ino, true); !c.ok()) {
      return (void)fuse_reply_err(req, reply_errno(c.error()));
    }
  }
  reply_attr(req, st);
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

void reply_open(fuse_req_t req, fuse_file_info* fi, bool wrote, bool writable);

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  // O_TRUNC (FUSE_CAP_ATOMIC_O_TRUNC) zero-fills the slice: a write.
  auto wrote = fs_of(req).open(ino, fi->flags);
  if (!wrote.ok()) return (void)fuse_reply_err(req, wrote.error().code);
  reply_open(req, fi, *wrote, (fi->flags & O_ACCMODE) != O_RDONLY);
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
  reinterpret_cast<Handle*>(fi->fh)->wrote.store(true);
  fuse_reply_write(req, *n);
}

// close(2): mirrors a written slice per mirror_on_close before close
// returns, so cp and dd report failures, with the mirror's errno (ENOSPC,
// EIO, ...).
void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* h = reinterpret_cast<Handle*>(fi->fh);
  // Taken before the mirror: a write through a dup'd descriptor that lands
  // meanwhile sets it again, and the next close mirrors that write.
  const bool wrote = h && h->wrote.exchange(false);
  if (wrote) h->truncated = false;  // this mirror covers the zero-fill too
  Status s = fs_of(req).close(ino, wrote);
  if (!s.ok()) {
    if (h) h->wrote = true;  // still unmirrored: the next close tries again
    record_failure(ctx_of(req), s.error());
    return (void)fuse_reply_err(req, reply_errno(s.error()));
  }
  fuse_reply_err(req, 0);
}

void reply_open(fuse_req_t req, fuse_file_info* fi, bool wrote, bool writable) {
  auto* h = new (std::nothrow) Handle();
  if (!h) return (void)fuse_reply_err(req, ENOMEM);
  h->writable = writable;
  h->truncated = wrote;
  fi->fh = reinterpret_cast<uint64_t>(h);
  fi->direct_io = 1;  // device memory changes behind our back: no page cache
  fi->keep_cache = 0;
  if (fuse_reply_open(req, fi) == -ENOENT) delete h;  // interrupted
}

// The namespace is fixed (fs/slice_fs.h): every call that would create,
// move or delete a name fails with EPERM and changes nothing.
void op_create(fuse_req_t req, fuse_ino_t, const char* name, mode_t,
               fuse_file_info*) {
  refuse(req, "create", name,
         "to declare a new one: pcimirror slice add " + ctx_of(req).mountpoint +
             " " + name + ":OFFSET:LENGTH");
}
void op_mknod(fuse_req_t req, fuse_ino_t, const char* name, mode_t, dev_t) {
  op_create(req, kRootIno, name, 0, nullptr);
}
void op_mkdir(fuse_req_t req, fuse_ino_t, const char* name, mode_t) {
  refuse(req, "mkdir", name, "the mount holds slice files only");
}
void op_symlink(fuse_req_t req, const char*, fuse_ino_t, const char* name) {
  refuse(req, "symlink", name, "the mount holds slice files only");
}
void op_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char* name) {
  refuse(req, "link", name, "the mount holds slice files only");
}
void op_unlink(fuse_req_t req, fuse_ino_t, const char* name) {
  refuse(req, "unlink", name,
         "to remove the slice (device memory stays): pcimirror slice rm " +
             ctx_of(req).mountpoint + " " + name);
}
void op_rmdir(fuse_req_t req, fuse_ino_t, const char* name) {
  refuse(req, "rmdir", name, "the mount holds slice files only");
}
void op_rename(fuse_req_t req, fuse_ino_t, const char* name, fuse_ino_t,
               const char* newname, unsigned int) {
  refuse(req, "rename", name,
         std::string("to rename a slice: pcimirror slice rename ") +
             ctx_of(req).mountpoint + " " + name + " " + newname +
             "; to replace a slice's contents, write it in place (cp, dd "
             "conv=notrunc, rsync --inplace)");
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Context& ctx = ctx_of(req);
  Result<std::string> v = make_error(ENODATA, "no such attribute");
  if (ino == kRootIno && std::strcmp(name, kLastErrorXattr) == 0) {
    MutexLock lock(ctx.mu);
    if (!ctx.last_error.empty()) v = ctx.last_error;
  } else {
    v = ctx.fs->getxattr(ino, name);
  }
  if (!v.ok()) return (void)fuse_reply_err(req, v.error().code);
  if (size == 0) return (void)fuse_reply_xattr(req, v->size());
  if (size < v->size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, v->data(), v->size());
}

// Control requests on the root (fs/control_xattr.h): `pcimirror sync` and
// `pcimirror slice add|rm|rename MOUNTPOINT`. Only root and the mount's
// owner may send them.
void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name,
                 const char* value, size_t size, int) {
  if (ino != kRootIno || !is_control_xattr(name))
    return (void)fuse_reply_err(req, ENOTSUP);
  Context& ctx = ctx_of(req);
  Status s;
  if (!may_control(req)) {
    s = make_error(EPERM, std::string(name) + " on " + ctx.mountpoint +
                              " refused for uid " +
                              std::to_string(fuse_req_ctx(req)->uid) +
                              ": only root and the mount's owner (uid " +
                              std::to_string(ctx.owner_uid) +
                              ") control a volume");
  } else {
    try {
      s = apply_control_xattr(*ctx.fs, name, std::string(value, size));
    } catch (const std::exception& e) {  // bad_alloc: no exception escapes
      s = make_error(ENOMEM, std::string(name) + ": " + e.what());
    }
  }
  if (!s.ok()) {
    log_error(s.error().what());
    MutexLock lock(ctx.mu);
    ctx.last_error = s.error().what();
  }
  fuse_reply_err(req, s.ok() ? 0 : reply_errno(s.error()));
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  if (ino == kRootIno) return (void)fuse_reply_xattr(req, 0);
  std::string names;
  for (const char* n : kXattrNames) names.append(n).push_back('\0');
  if (size == 0) return (void)fuse_reply_xattr(req, names.size());
  if (size < names.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, names.data(), names.size());
}

// fsync mirrors the slice. A writer may make its writes durable; through a
// read-only descriptor only root and the mount's owner may start a mirror
// (`pcimirror sync NAME` does so).
void op_fsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info* fi) {
  auto* h = fi && fi->fh ? reinterpret_cast<Handle*>(fi->fh) : nullptr;
  if (!(h && h->writable) && !may_control(req)) {
    log_warning("fsync of a read-only descriptor on " + ctx_of(req).mountpoint +
                " by uid " + std::to_string(fuse_req_ctx(req)->uid) +
                " refused (EPERM): only root and the mount's owner start "
                "mirrors");
    return (void)fuse_reply_err(req, EPERM);
  }
  const bool wrote = h && h->wrote.exchange(false);
  Status s = fs_of(req).sync(ino);
  if (!s.ok()) {
    if (wrote) h->wrote = true;
    record_failure(ctx_of(req), s.error());
    return (void)fuse_reply_err(req, reply_errno(s.error()));
  }
  fuse_reply_err(req, 0);
}

// The last close of an open file: a truncation that no close after a write
// mirrored (`: > FILE`, open(O_TRUNC) then close) is mirrored now, per
// mirror_on_close. The kernel does not wait for release, so a failure is
// logged and shows in the slice's state.
void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* h = reinterpret_cast<Handle*>(fi->fh);
  if (h->truncated.exchange(false) || h->wrote.exchange(false)) {
    if (Status s = fs_of(req).close(ino, true); !s.ok())
      log_error("mirror at release of inode " + std::to_string(ino) + ": " +
                s.error().what());
  }
  delete h;
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
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.symlink = op_symlink;
  ops.link = op_link;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
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
  Context ctx{
      &fs, opts.max_write_bytes, opts.mountpoint, ::getuid(), {}, {}, {}, false,
      {}};
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
  // signal ended the loop) or just after (umount did), unless FUSE_DESTROY
  // ran it already. A failure is the daemon's: it exits non-zero.
  final_mirror(ctx);
  // No other thread now; released before ~FuseSession runs FUSE_DESTROY.
  MutexLock final_lock(ctx.final_mu);
  if (!ctx.final_failures.empty()) {
    std::string names, details;
    for (const SliceFs::SyncFailure& f : ctx.final_failures) {
      names += (names.empty() ? "'" : ", '") + f.slice + "'";
      details += "; " + f.slice + ": " + f.error.what();
    }
    return make_error(
        ctx.final_failures.front().error.code,
        "final mirror at unmount of " + opts.fsname + " (" + opts.mountpoint +
            ") failed for slice" +
            (ctx.final_failures.size() > 1 ? "s " : " ") + names +
            ": their memory since the last mirror is not on the device" +
            details);
  }
  if (r < 0) return sys_error(-r, "FUSE loop on " + opts.mountpoint + " failed");
  return {};
}

}  // namespace pcimirror
