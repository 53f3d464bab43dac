// The device ceiling for bench/run: the same bytes pcimirror moves, written
// or read sequentially with O_DIRECT through io_uring from a few reused,
// registered, pre-faulted buffers (default 16 x 1 MiB at queue depth 16),
// with no FUSE, no metadata and no checksums.
// Usage: raw_pipeline DEVICE write|read BYTES [BUFFERS] [BUFFER_BYTES] [QD]
//        [flush|noflush|copy] [OFFSET]
// With "flush", a write ends with fdatasync (a durable write, as a mirror
// must be). With "copy", a read copies each buffer into BYTES of memory that
// is allocated and touched before the clock starts (what a restore into an
// already allocated region must do at least). OFFSET (bytes, default 0) is where on DEVICE the transfer starts,
// so that bench/run can pair it with pcimirror on a mounted volume's free
// space. Prints "<MB/s>".
#include <fcntl.h>
#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(
        stderr,
        "usage: %s DEVICE write|read BYTES [BUFFERS] [BUFFER_BYTES] [QD] "
        "[flush|noflush] [OFFSET]\n",
        argv[0]);
    return 2;
  }
  const bool write = std::strcmp(argv[2], "write") == 0;
  const uint64_t total = std::strtoull(argv[3], nullptr, 0);
  const unsigned nbuf = argc > 4 ? std::atoi(argv[4]) : 16;
  const size_t bsz = argc > 5 ? std::strtoull(argv[5], nullptr, 0) : (1 << 20);
  const unsigned qd = argc > 6 ? std::atoi(argv[6]) : 16;
  const bool flush = argc > 7 && std::strcmp(argv[7], "flush") == 0;
  const bool copy = !write && argc > 7 && std::strcmp(argv[7], "copy") == 0;
  const uint64_t offset = argc > 8 ? std::strtoull(argv[8], nullptr, 0) : 0;
  int fd = ::open(argv[1], (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
  if (fd < 0) return std::perror(argv[1]), 1;
  // The buffers as pcimirror's bounce pool has them (io/bounce_pool.cc):
  // 2 MiB-aligned and asked for transparent huge pages, which doubles what
  // a loop device moves here (physically contiguous buffers).
  const size_t huge = size_t{2} << 20;
  void* raw_mem = ::mmap(nullptr, nbuf * bsz + huge, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw_mem == MAP_FAILED) return std::perror("mmap"), 1;
  void* mem = reinterpret_cast<void*>(
      (reinterpret_cast<uintptr_t>(raw_mem) + huge - 1) & ~uintptr_t{huge - 1});
  ::madvise(mem, nbuf * bsz, MADV_HUGEPAGE);
  std::memset(mem, 0x5a, nbuf * bsz);
  char* dst = nullptr;  // the restore target, prefaulted
  if (copy) {
    void* d = ::mmap(nullptr, total, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (d == MAP_FAILED) return std::perror("mmap"), 1;
    dst = static_cast<char*>(d);
    std::memset(dst, 0x33, total);
  }
  std::vector<uint64_t> at(nbuf);  // device offset each buffer was read from
  io_uring ring;
  if (io_uring_queue_init(qd, &ring, 0) < 0) return std::fprintf(stderr, "io_uring\n"), 1;
  std::vector<iovec> iov(nbuf);
  for (unsigned i = 0; i < nbuf; ++i) iov[i] = {static_cast<char*>(mem) + i * bsz, bsz};
  if (io_uring_register_buffers(&ring, iov.data(), nbuf) < 0)
    return std::fprintf(stderr, "register\n"), 1;
  std::vector<unsigned> free_bufs;
  for (unsigned i = 0; i < nbuf; ++i) free_bufs.push_back(i);
  uint64_t next = 0, done = 0;
  unsigned inflight = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (done < total) {
    while (next < total && inflight < qd && !free_bufs.empty()) {
      unsigned b = free_bufs.back();
      free_bufs.pop_back();
      const unsigned len = static_cast<unsigned>(std::min<uint64_t>(bsz, total - next));
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      if (write)
        io_uring_prep_write_fixed(sqe, fd, iov[b].iov_base, len, offset + next,
                                  b);
      else
        io_uring_prep_read_fixed(sqe, fd, iov[b].iov_base, len, offset + next,
                                 b);
      io_uring_sqe_set_data64(sqe, b);
      at[b] = next;
      next += len;
      ++inflight;
    }
    io_uring_submit_and_wait(&ring, 1);
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      if (cqe->res <= 0) return std::fprintf(stderr, "I/O error %d\n", cqe->res), 1;
      done += static_cast<uint64_t>(cqe->res);
      const unsigned b = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
      if (dst) std::memcpy(dst + at[b], iov[b].iov_base, static_cast<size_t>(cqe->res));
      free_bufs.push_back(b);
      --inflight;
      ++seen;
    }
    io_uring_cq_advance(&ring, seen);
  }
  if (write && flush) ::fdatasync(fd);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%.0f\n", static_cast<double>(total) / s / 1e6);
  return 0;
}
