// The FUSE ceiling for bench/run: a minimal libfuse3 low-level filesystem
// with one file, "data", backed by pre-faulted anonymous memory; writes and
// reads only memcpy. Mounted with pcimirror's flags (direct_io, the
// multi-threaded loop, max_write 1 MiB, st_blksize 1 MiB), so dd and cp onto
// it measure what FUSE itself allows on this machine.
// Usage: fuse_ceiling MOUNTPOINT BYTES   (foreground; end with fusermount3 -u)
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {
char* g_mem;
uint64_t g_size;
constexpr fuse_ino_t kData = 2;

void fill_stat(fuse_ino_t ino, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_blksize = 1 << 20;
  if (ino == FUSE_ROOT_ID) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
  } else {
    st->st_mode = S_IFREG | 0644;
    st->st_nlink = 1;
    st->st_size = static_cast<off_t>(g_size);
  }
}
void init(void*, fuse_conn_info* c) {
  c->max_write = 1 << 20;
  c->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  c->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}
void lookup(fuse_req_t req, fuse_ino_t, const char* name) {
  if (std::strcmp(name, "data")) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e{};
  e.ino = kData;
  fill_stat(kData, &e.attr);
  e.attr_timeout = e.entry_timeout = 1;
  fuse_reply_entry(req, &e);
}
void getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st;
  fill_stat(ino, &st);
  fuse_reply_attr(req, &st, 1);
}
void setattr(fuse_req_t req, fuse_ino_t ino, struct stat*, int, fuse_file_info*) {
  struct stat st;
  fill_stat(ino, &st);  // fixed size, like a slice
  fuse_reply_attr(req, &st, 1);
}
void open(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  fi->direct_io = 1;
  fuse_reply_open(req, fi);
}
void read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  uint64_t o = static_cast<uint64_t>(off);
  size_t n = o >= g_size ? 0 : std::min<uint64_t>(size, g_size - o);
  fuse_reply_buf(req, g_mem + o, n);
}
void write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off, fuse_file_info*) {
  uint64_t o = static_cast<uint64_t>(off);
  if (o >= g_size) return (void)fuse_reply_err(req, ENOSPC);
  size_t n = std::min<uint64_t>(size, g_size - o);
  std::memcpy(g_mem + o, buf, n);
  fuse_reply_write(req, n);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  g_size = std::strtoull(argv[2], nullptr, 0);
  g_mem = static_cast<char*>(::mmap(nullptr, g_size, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  fuse_lowlevel_ops ops{};
  ops.init = init;
  ops.lookup = lookup;
  ops.getattr = getattr;
  ops.setattr = setattr;
  ops.open = open;
  ops.read = read;
  ops.write = write;
  std::vector<std::string> words = {"fuse_ceiling", "-o", "fsname=ceiling,subtype=ceiling"};
  std::vector<char*> av;
  for (auto& w : words) av.push_back(w.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(av.size()), av.data());
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, nullptr);
  if (!se || fuse_set_signal_handlers(se) || fuse_session_mount(se, argv[1])) return 1;
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_idle_threads(cfg, 10);
  int r = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  return r ? 1 : 0;
}
