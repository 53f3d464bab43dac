#include "pcimap/file_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>

namespace pcimirror {

Result<std::unique_ptr<FileRegion>> FileRegion::map(UniqueFd fd,
                                                    std::string name,
                                                    uint64_t size_bytes) {
  void* p = ::mmap(nullptr, size_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                   fd.get(), 0);
  if (p == MAP_FAILED)
    return errno_error("cannot map memory region " + name);
  auto r = std::unique_ptr<FileRegion>(new FileRegion());
  r->name_ = std::move(name);
  r->fd_ = std::move(fd);
  r->mapping_ = Mapping(p, size_bytes);
  return r;
}

void FileRegion::prefault_for_write(uint64_t offset_bytes,
                                    uint64_t length_bytes) {
#ifdef MADV_POPULATE_WRITE
  const uint64_t page = 4096;
  const uint64_t start = offset_bytes / page * page;
  const uint64_t end = std::min(size_bytes(), offset_bytes + length_bytes);
  if (end > start)
    (void)::madvise(base() + start, end - start, MADV_POPULATE_WRITE);
#else
  (void)offset_bytes;
  (void)length_bytes;
#endif
}

void FileRegion::prefault_for_read(uint64_t offset_bytes,
                                   uint64_t length_bytes) {
#ifdef MADV_POPULATE_READ
  const uint64_t page = 4096;
  const uint64_t start = offset_bytes / page * page;
  const uint64_t end = std::min(size_bytes(), offset_bytes + length_bytes);
  if (end > start)
    (void)::madvise(base() + start, end - start, MADV_POPULATE_READ);
#else
  (void)offset_bytes;
  (void)length_bytes;
#endif
}

Result<std::unique_ptr<FileRegion>> FileRegion::open_file(
    const std::string& path, uint64_t size_bytes) {
  const std::string name = "file:" + path;
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid() && errno == ENOENT) {
    if (size_bytes == 0)
      return make_error(EINVAL, "memory file " + path +
                                    " does not exist; give size= to create it");
    fd.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  }
  if (!fd.valid()) return errno_error("cannot open memory file " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return errno_error("cannot stat memory file " + path);
  if (!S_ISREG(st.st_mode))
    return make_error(EINVAL, "memory file " + path + " is not a regular file");
  uint64_t have = static_cast<uint64_t>(st.st_size);
  if (size_bytes == 0) {
    if (have == 0)
      return make_error(EINVAL, "memory file " + path +
                                    " is empty; give size= to set its size");
    size_bytes = have;
  } else if (have == 0) {
    if (::ftruncate(fd.get(), static_cast<off_t>(size_bytes)) != 0)
      return errno_error("cannot size memory file " + path);
  } else if (have != size_bytes) {
    return make_error(EINVAL, "memory file " + path + " holds " +
                                  std::to_string(have) + " bytes, not the " +
                                  std::to_string(size_bytes) +
                                  " given by size=; fix size= or remove the "
                                  "file");
  }
  return map(std::move(fd), name, size_bytes);
}

Result<std::unique_ptr<FileRegion>> FileRegion::create_memfd(
    const std::string& name, uint64_t size_bytes) {
  if (size_bytes == 0)
    return make_error(EINVAL, "memfd region " + name + " needs size=");
  UniqueFd fd(::memfd_create(name.c_str(), MFD_CLOEXEC));
  if (!fd.valid()) return errno_error("memfd_create failed for " + name);
  if (::ftruncate(fd.get(), static_cast<off_t>(size_bytes)) != 0)
    return errno_error("cannot size memfd region " + name);
  return map(std::move(fd), "memfd:" + name, size_bytes);
}

}  // namespace pcimirror
