// pcimirror-craft IMAGE FIELD VALUE: rewrites one superblock field of a
// volume (primary and backup, with valid CRC32Cs) to build images that only
// a newer or damaged pcimirror would leave: unknown feature bits, another
// logical block size, a larger recorded device size. Test use only.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fs/format.h"

using namespace pcimirror;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s IMAGE incompat|ro_compat|lbs|device_bytes VALUE\n", argv[0]);
    return 2;
  }
  int fd = ::open(argv[1], O_RDWR);
  if (fd < 0) return perror(argv[1]), 1;
  std::vector<uint8_t> b(kSuperblockBytes);
  if (::pread(fd, b.data(), b.size(), 0) != static_cast<ssize_t>(b.size())) return 1;
  auto sb = decode_superblock(b);
  if (!sb.ok()) return std::fprintf(stderr, "%s\n", sb.error().what().c_str()), 1;
  const std::string field = argv[2];
  const uint64_t v = std::strtoull(argv[3], nullptr, 0);
  if (field == "incompat") sb->incompat_features |= v;
  else if (field == "ro_compat") sb->ro_compat_features |= v;
  else if (field == "lbs") sb->logical_block_size = static_cast<uint32_t>(v);
  else if (field == "device_bytes") sb->device_bytes = v;
  else return std::fprintf(stderr, "unknown field %s\n", argv[2]), 2;
  auto out = encode_superblock(*sb);
  for (uint64_t off : {uint64_t{0}, sb->backup_superblock_sector * kSectorBytes})
    if (::pwrite(fd, out.data(), out.size(), static_cast<off_t>(off)) !=
        static_cast<ssize_t>(out.size()))
      return perror("pwrite"), 1;
  ::fsync(fd);
  ::close(fd);
  return 0;
}
