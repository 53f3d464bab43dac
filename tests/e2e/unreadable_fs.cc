// pcimirror-unreadable-fs BACKING BADLIST MOUNTPOINT [FUSE options]: a FUSE
// filesystem serving one file, MOUNTPOINT/disk, whose bytes are those of the
// regular file BACKING, except that every read overlapping a byte range
// listed in the text file BADLIST ("OFFSET LENGTH" per line, in bytes, read
// again at every read) fails with EIO, as a disk with unreadable sectors
// does. A loop device attached to MOUNTPOINT/disk (losetup --direct-io=off)
// then returns EIO for those sectors: real unreadable sectors without
// device-mapper, for tests/e2e/restore_damage.sh. Writes always succeed.
// Every open is direct_io, so no page cache hides a read from it.
#define FUSE_USE_VERSION 312
#include <fcntl.h>
#include <fuse3/fuse.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace {

int backing_fd = -1;
std::string bad_list;
constexpr const char* kName = "/disk";

// True when [offset, offset + length) overlaps a range of the bad list.
bool unreadable(uint64_t offset, uint64_t length) {
  std::ifstream in(bad_list);
  uint64_t start = 0, len = 0;
  while (in >> start >> len)
    if (offset < start + len && start < offset + length) return true;
  return false;
}

int do_getattr(const char* path, struct stat* st, fuse_file_info*) {
  std::memset(st, 0, sizeof *st);
  if (std::strcmp(path, "/") == 0) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    return 0;
  }
  if (std::strcmp(path, kName) != 0) return -ENOENT;
  struct stat b {};
  if (::fstat(backing_fd, &b) != 0) return -errno;
  st->st_mode = S_IFREG | 0600;
  st->st_nlink = 1;
  st->st_size = b.st_size;
  return 0;
}

int do_open(const char* path, fuse_file_info* fi) {
  if (std::strcmp(path, kName) != 0) return -ENOENT;
  fi->direct_io = 1;
  return 0;
}

int do_read(const char*, char* buf, size_t size, off_t offset,
            fuse_file_info*) {
  if (unreadable(static_cast<uint64_t>(offset), size)) return -EIO;
  ssize_t n = ::pread(backing_fd, buf, size, offset);
  return n < 0 ? -errno : static_cast<int>(n);
}

int do_write(const char*, const char* buf, size_t size, off_t offset,
             fuse_file_info*) {
  ssize_t n = ::pwrite(backing_fd, buf, size, offset);
  return n < 0 ? -errno : static_cast<int>(n);
}

int do_fsync(const char*, int, fuse_file_info*) {
  return ::fdatasync(backing_fd) == 0 ? 0 : -errno;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s BACKING BADLIST MOUNTPOINT [FUSE options]\n",
                 argv[0]);
    return 2;
  }
  backing_fd = ::open(argv[1], O_RDWR);
  if (backing_fd < 0) {
    std::perror(argv[1]);
    return 1;
  }
  bad_list = argv[2];
  fuse_operations ops{};
  ops.getattr = do_getattr;
  ops.open = do_open;
  ops.read = do_read;
  ops.write = do_write;
  ops.fsync = do_fsync;
  // argv for fuse_main: program, mount point, the rest.
  argv[2] = argv[0];
  return fuse_main(argc - 2, argv + 2, &ops, nullptr);
}
