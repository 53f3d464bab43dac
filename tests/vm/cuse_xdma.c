// A stand-in for a Xilinx/AMD XDMA board's channel 0 in the VM test
// (tests/vm/dma.sh, issue 14): two CUSE character devices, PREFIX_c2h_0
// (card to host, read) and PREFIX_h2c_0 (host to card, write), over one
// "card memory" buffer shared by the two server processes (an anonymous
// MAP_SHARED mapping made before fork). Like the XDMA driver:
//  - the file offset of pread/pwrite is the card address;
//  - the caller's buffer address must equal the card address modulo the
//    alignment (cdev_sgdma.c, check_transfer_align), else EINVAL;
//  - a transfer beyond the card memory fails with EINVAL;
//  - EIO on demand: while the fault file exists and holds "c2h|h2c START
//    END" lines, transfers of that direction touching card addresses
//    [START, END) fail with EIO.
// What CUSE hides and how this server recovers it: the kernel's cuse_read_iter
// and cuse_write_iter send every request with offset 0 (plus the bytes
// already done within the call, when the call is split at max_read), and
// never the caller's buffer address. The caller is blocked in its syscall
// while the server answers, so the server reads the syscall's arguments
// from /proc/TID/syscall (TID from the request's context): pread64/pwrite64
// give the card address and the buffer address, read/write give the buffer
// and card address 0 (CUSE's llseek is noop_llseek, so there is no file
// position: dd skip= does not work, use the get/put helpers below). Other
// syscalls (readv, io_uring workers, ...) are refused with EINVAL.
//
// Usage:
//   cuse_xdma serve PREFIX SIZE ALIGN FAULTFILE   (foreground; PREFIX e.g.
//       xdma0 makes /dev/xdma0_c2h_0 and /dev/xdma0_h2c_0)
//   cuse_xdma get DEV OFFSET LENGTH OUTFILE [MISALIGN]   pread at OFFSET
//   cuse_xdma put DEV OFFSET INFILE [MISALIGN]           pwrite at OFFSET
// get/put use a buffer whose address equals OFFSET modulo 4096, plus
// MISALIGN bytes (to provoke the alignment rule). They print the errno name
// on failure and exit 1.
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <cuse_lowlevel.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned char* g_mem;
static uint64_t g_size;
static uint64_t g_align;
static const char* g_fault;
static int g_to_card;  // this process serves h2c

static uint64_t parse_size(const char* s) {
  char* end;
  uint64_t v = strtoull(s, &end, 0);
  switch (*end) {
    case 'K':
      v <<= 10;
      break;
    case 'M':
      v <<= 20;
      break;
    case 'G':
      v <<= 30;
      break;
  }
  return v;
}

// The syscall the requesting thread is blocked in: 0 on success.
static int caller_syscall(pid_t tid, long* nr, uint64_t args[6]) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/syscall", (int)tid);
  for (int attempt = 0; attempt < 200; attempt++) {
    FILE* f = fopen(path, "r");
    if (!f) return -1;
    char* got = fgets(line, sizeof line, f);
    fclose(f);
    if (!got) return -1;
    if (strncmp(line, "running", 7) != 0) {
      unsigned long long a[6];
      if (sscanf(line, "%ld %llx %llx %llx %llx %llx %llx", nr, &a[0], &a[1],
                 &a[2], &a[3], &a[4], &a[5]) != 7)
        return -1;
      for (int i = 0; i < 6; i++) args[i] = a[i];
      return 0;
    }
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

// 1 when the fault file asks for EIO on [card, card + n) in this direction.
static int fault_hit(uint64_t card, uint64_t n) {
  FILE* f = fopen(g_fault, "r");
  if (!f) return 0;
  char dir[8];
  unsigned long long start, end;
  int hit = 0;
  while (fscanf(f, "%7s %llx %llx", dir, &start, &end) == 3) {
    if (strcmp(dir, g_to_card ? "h2c" : "c2h") == 0 && card < end &&
        card + n > start)
      hit = 1;
  }
  fclose(f);
  return hit;
}

// Checks one request of `n` bytes at CUSE offset `off`; 0 or an errno, and
// *card set to the card address.
static int check(fuse_req_t req, size_t n, off_t off, uint64_t* card) {
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  long nr;
  uint64_t a[6];
  const char* dir = g_to_card ? "h2c" : "c2h";
  if (caller_syscall(ctx->pid, &nr, a) != 0) {
    fprintf(stderr, "cuse_xdma %s: cannot read /proc/%d/syscall\n", dir,
            (int)ctx->pid);
    return EINVAL;
  }
  uint64_t base;
  if (nr == SYS_pread64 || nr == SYS_pwrite64) {
    base = a[3];
  } else if (nr == SYS_read || nr == SYS_write) {
    base = 0;
  } else {
    fprintf(stderr,
            "cuse_xdma %s: syscall %ld from tid %d: only read, write, "
            "pread64 and pwrite64 are served\n",
            dir, nr, (int)ctx->pid);
    return EINVAL;
  }
  *card = base + (uint64_t)off;
  const uint64_t buf = a[1] + (uint64_t)off;
  if (((buf ^ *card) & (g_align - 1)) != 0) {
    fprintf(stderr,
            "cuse_xdma %s: buffer 0x%" PRIx64 " and card address 0x%" PRIx64
            " differ modulo %" PRIu64 ": EINVAL\n",
            dir, buf, *card, g_align);
    return EINVAL;
  }
  if (*card > g_size || n > g_size - *card) {
    fprintf(stderr,
            "cuse_xdma %s: %zu bytes at card address 0x%" PRIx64
            " beyond the card memory of %" PRIu64 " bytes: EINVAL\n",
            dir, n, *card, g_size);
    return EINVAL;
  }
  if (fault_hit(*card, n)) {
    fprintf(stderr,
            "cuse_xdma %s: injected EIO for %zu bytes at card address "
            "0x%" PRIx64 "\n",
            dir, n, *card);
    return EIO;
  }
  return 0;
}

static void x_open(fuse_req_t req, struct fuse_file_info* fi) {
  fuse_reply_open(req, fi);
}

static void x_read(fuse_req_t req, size_t size, off_t off,
                   struct fuse_file_info* fi) {
  (void)fi;
  uint64_t card;
  int err = g_to_card ? EINVAL : check(req, size, off, &card);
  if (err)
    fuse_reply_err(req, err);
  else
    fuse_reply_buf(req, (const char*)g_mem + card, size);
}

static void x_write(fuse_req_t req, const char* buf, size_t size, off_t off,
                    struct fuse_file_info* fi) {
  (void)fi;
  uint64_t card;
  int err = g_to_card ? check(req, size, off, &card) : EINVAL;
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  memcpy(g_mem + card, buf, size);
  fuse_reply_write(req, size);
}

static const struct cuse_lowlevel_ops kOps = {
    .open = x_open,
    .read = x_read,
    .write = x_write,
};

static int serve(const char* prefix, int to_card) {
  char devname[128];
  snprintf(devname, sizeof devname, "DEVNAME=%s_%s_0", prefix,
           to_card ? "h2c" : "c2h");
  const char* dev_info[] = {devname};
  struct cuse_info ci;
  memset(&ci, 0, sizeof ci);
  ci.dev_info_argc = 1;
  ci.dev_info_argv = dev_info;
  g_to_card = to_card;
  // -f: foreground; -s: one thread (requests are handled in order).
  char* argv[] = {(char*)"cuse_xdma", (char*)"-f", (char*)"-s", NULL};
  return cuse_lowlevel_main(3, argv, &ci, &kOps, NULL);
}

static void* aligned_buffer(uint64_t offset, size_t len, uint64_t misalign) {
  unsigned char* raw = NULL;
  if (posix_memalign((void**)&raw, 4096, len + 8192) != 0) return NULL;
  return raw + (offset & 4095) + misalign;
}

int main(int argc, char** argv) {
  if (argc == 6 && strcmp(argv[1], "serve") == 0) {
    g_size = parse_size(argv[3]);
    g_align = parse_size(argv[4]);
    g_fault = argv[5];
    g_mem = mmap(NULL, g_size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_mem == MAP_FAILED) {
      perror("cuse_xdma: mmap");
      return 1;
    }
    pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) return serve(argv[2], 1);
    const int rc = serve(argv[2], 0);
    waitpid(child, NULL, 0);
    return rc;
  }
  if ((argc == 6 || argc == 7) && strcmp(argv[1], "get") == 0) {
    const uint64_t off = parse_size(argv[3]);
    const size_t len = parse_size(argv[4]);
    unsigned char* buf =
        aligned_buffer(off, len, argc == 7 ? parse_size(argv[6]) : 0);
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0 || !buf) {
      perror(argv[2]);
      return 1;
    }
    for (size_t done = 0; done < len;) {
      ssize_t got = pread(fd, buf + done, len - done, (off_t)(off + done));
      if (got <= 0) {
        printf("cuse_xdma get: pread %s at 0x%" PRIx64 ": %s\n", argv[2],
               off + done, got < 0 ? strerrorname_np(errno) : "EOF");
        return 1;
      }
      done += (size_t)got;
    }
    FILE* out = fopen(argv[5], "w");
    if (!out || fwrite(buf, 1, len, out) != len || fclose(out) != 0) return 1;
    return 0;
  }
  if ((argc == 5 || argc == 6) && strcmp(argv[1], "put") == 0) {
    const uint64_t off = parse_size(argv[3]);
    struct stat st;
    if (stat(argv[4], &st) != 0) return 1;
    const size_t len = (size_t)st.st_size;
    unsigned char* buf =
        aligned_buffer(off, len, argc == 6 ? parse_size(argv[5]) : 0);
    FILE* in = fopen(argv[4], "r");
    if (!in || !buf || fread(buf, 1, len, in) != len) return 1;
    fclose(in);
    int fd = open(argv[2], O_WRONLY);
    if (fd < 0) {
      perror(argv[2]);
      return 1;
    }
    for (size_t done = 0; done < len;) {
      ssize_t put = pwrite(fd, buf + done, len - done, (off_t)(off + done));
      if (put <= 0) {
        printf("cuse_xdma put: pwrite %s at 0x%" PRIx64 ": %s\n", argv[2],
               off + done, put < 0 ? strerrorname_np(errno) : "0 bytes");
        return 1;
      }
      done += (size_t)put;
    }
    return 0;
  }
  fprintf(stderr,
          "usage: cuse_xdma serve PREFIX SIZE ALIGN FAULTFILE\n"
          "       cuse_xdma get DEV OFFSET LENGTH OUTFILE [MISALIGN]\n"
          "       cuse_xdma put DEV OFFSET INFILE [MISALIGN]\n");
  return 2;
}
