/* bar_tool FILE fill BYTE | bar_tool FILE check BYTE
 * Fills or checks a whole PCI BAR through its sysfs resource file (mmap: the
 * kernel offers no read/write on memory BAR resource files). Used inside the
 * VM test's guest to zero the ivshmem BAR before a restore. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s RESOURCE fill|check BYTE\n", argv[0]);
    return 2;
  }
  int fd = open(argv[1], O_RDWR | O_SYNC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    perror(argv[1]);
    return 1;
  }
  size_t n = (size_t)st.st_size;
  unsigned char* p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  int byte = (int)strtol(argv[3], NULL, 0);
  if (strcmp(argv[2], "fill") == 0) {
    memset(p, byte, n);
    msync(p, n, MS_SYNC);
    printf("bar_tool: filled %zu bytes with 0x%02x\n", n, byte);
    return 0;
  }
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)byte) {
      printf("bar_tool: byte %zu is 0x%02x, not 0x%02x\n", i, p[i], byte);
      return 1;
    }
  printf("bar_tool: all %zu bytes are 0x%02x\n", n, byte);
  return 0;
}
