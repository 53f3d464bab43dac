// pcimirror demo: the main job end to end on an embedded default.
//
//  1. a 256 MiB emulated region (/dev/shm) and a 1 GiB sparse image, attached
//     as a loop device when run as root;
//  2. format with several slices (one deliberately unaligned) and mount;
//  3. cp and dd real data onto the mount, then `pcimirror sync`;
//  4. status with MB/s per sync, unmount;
//  5. restore into a fresh zeroed region and verify byte for byte;
//  6. remove everything it created, also on Ctrl-C.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "io/unique_fd.h"
#include "io/units.h"

extern char** environ;

namespace pcimirror::cli {
namespace {

volatile sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }

struct DemoSlice {
  const char* name;
  uint64_t offset_bytes;
  uint64_t length_bytes;
  const char* how;  // "dd" or "cp"
};

// Cleanup actions run in reverse order, whatever happens.
class CleanupStack {
 public:
  ~CleanupStack() { run(); }
  void push(std::function<void()> f) { fs_.push_back(std::move(f)); }
  void run() {
    while (!fs_.empty()) {
      auto f = std::move(fs_.back());
      fs_.pop_back();
      f();
    }
  }

 private:
  std::vector<std::function<void()>> fs_;
};

// Runs a command, echoing it; returns its exit status (or -1).
int run_cmd(const std::vector<std::string>& argv, bool echo = true,
            std::string* out = nullptr) {
  if (echo) {
    std::cout << "  $";
    for (const auto& a : argv) std::cout << ' ' << a;
    std::cout << std::endl;
  }
  std::vector<char*> av;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  int pipefd[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (out) {
    if (::pipe(pipefd) != 0) return -1;
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
  }
  pid_t pid;
  int r = posix_spawnp(&pid, av[0], &fa, nullptr, av.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (out) ::close(pipefd[1]);
  if (r != 0) {
    if (out) ::close(pipefd[0]);
    std::cerr << "pcimirror demo: cannot run " << argv[0] << ": "
              << std::strerror(r) << "\n";
    return -1;
  }
  if (out) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(pipefd[0], buf, sizeof buf)) != 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      out->append(buf, static_cast<size_t>(n));
    }
    ::close(pipefd[0]);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Writes `bytes` of pseudo-random data (seeded) to `path`.
bool write_random_file(const std::string& path, uint64_t bytes, uint64_t seed) {
  std::ofstream f(path, std::ios::binary);
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> buf(1 << 17);
  while (bytes > 0 && f) {
    for (auto& w : buf) w = rng();
    uint64_t n = std::min<uint64_t>(bytes, buf.size() * 8);
    f.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n));
    bytes -= n;
  }
  return static_cast<bool>(f);
}

// Maps a whole file read-only.
Mapping map_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || st.st_size == 0) return {};
  void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ,
                   MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return {};
  return Mapping(p, static_cast<size_t>(st.st_size));
}

bool is_mounted(const std::string& mountpoint) {
  return device_of_mountpoint(mountpoint).has_value();
}

// Waits until the daemon released the device (it holds flock(LOCK_EX)).
bool wait_device_free(const std::string& dev) {
  for (int i = 0; i < 200; ++i) {
    BlockDevice::OpenOptions o;
    if (BlockDevice::open(dev, o).ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

int run_demo() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  auto interrupted = [] {
    if (g_interrupted) std::cout << "\ninterrupted: cleaning up\n";
    return g_interrupted != 0;
  };

  const std::string exe = self_exe();
  const uint64_t region_bytes = 256 * kMiB;
  const std::vector<DemoSlice> slices = {
      {"frames", 0, 128 * kMiB, "dd"},
      {"config", 128 * kMiB, 1 * kMiB, "cp"},
      {"capture", 129 * kMiB, 64 * kMiB, "cp"},
      // N sectors plus 17 bytes at an odd offset: bounced head and tail.
      {"odd", 200 * kMiB + 3, 1000 * 512 + 17, "dd"},
  };

  CleanupStack cleanup;
  char tmpl[] = "/tmp/pcimirror-demo.XXXXXX";
  if (!::mkdtemp(tmpl)) return fail(errno_error("mkdtemp"));
  const std::string work = tmpl;
  cleanup.push([work] { std::filesystem::remove_all(work); });
  const std::string tag = std::to_string(::getpid());
  const std::string region = "/dev/shm/pcimirror-demo-" + tag + ".ram";
  const std::string restored = "/dev/shm/pcimirror-demo-" + tag + ".restored";
  cleanup.push([region, restored] {
    ::unlink(region.c_str());
    ::unlink(restored.c_str());
  });
  const std::string image = work + "/disk.img";
  const std::string mnt = work + "/mnt";
  std::filesystem::create_directory(mnt);

  std::cout << "== 1. an emulated 256 MiB BAR and a 1 GiB disk\n";
  {
    UniqueFd fd(::open(image.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.valid() || ::ftruncate(fd.get(), static_cast<off_t>(kGiB)) != 0)
      return fail(errno_error("cannot create " + image));
  }
  std::string device = image;
  if (::geteuid() == 0) {
    std::string out;
    if (run_cmd({"losetup", "--find", "--show", "--direct-io=on", image}, true,
                &out) == 0) {
      device = out.substr(0, out.find('\n'));
      cleanup.push([device] { run_cmd({"losetup", "-d", device}, false); });
      std::cout << "  loop device " << device << "\n";
    } else {
      std::cout << "  losetup failed; using the image file directly\n";
    }
  } else {
    std::cout << "  not root: using the image file " << image << " directly\n";
  }
  if (interrupted()) return kFailure;

  std::cout << "== 2. format and mount\n";
  std::vector<std::string> fmt = {exe, "format", device, "--memory",
                                  "file=" + region + ",size=" +
                                      std::to_string(region_bytes),
                                  "--label",
                                  "demo"};
  for (const auto& s : slices)
    fmt.insert(fmt.end(), {"--slice", std::string(s.name) + ":" +
                                          std::to_string(s.offset_bytes) + ":" +
                                          std::to_string(s.length_bytes)});
  if (run_cmd(fmt) != 0) return fail("format failed");
  if (run_cmd({exe, "mount", device, mnt}) != 0) return fail("mount failed");
  cleanup.push([mnt, device] {
    if (is_mounted(mnt)) {
      run_cmd({"fusermount3", "-u", mnt}, false);
      wait_device_free(device);
    }
  });
  if (interrupted()) return kFailure;

  std::cout << "== 3. copy data onto the mount (each close mirrors the slice)\n";
  for (size_t i = 0; i < slices.size(); ++i) {
    const DemoSlice& s = slices[i];
    const std::string src = work + "/" + s.name + ".src";
    if (!write_random_file(src, s.length_bytes, 1000 + i))
      return fail("cannot write " + src);
    const std::string dst = mnt + "/" + s.name;
    int r = std::strcmp(s.how, "dd") == 0
                ? run_cmd({"dd", "if=" + src, "of=" + dst, "bs=1M",
                           "conv=fsync,notrunc", "status=none"})
                : run_cmd({"cp", src, dst});
    if (r != 0) return fail(std::string(s.how) + " onto " + dst + " failed");
    if (interrupted()) return kFailure;
  }
  if (run_cmd({exe, "sync", mnt}) != 0) return fail("sync failed");

  std::cout << "== 4. status\n";
  if (run_cmd({exe, "status", mnt}) != 0) return fail("status failed");
  if (run_cmd({"fusermount3", "-u", mnt}) != 0) return fail("unmount failed");
  if (!wait_device_free(device)) return fail("daemon did not release " + device);
  if (interrupted()) return kFailure;

  std::cout << "== 5. restore into a fresh zeroed region and verify\n";
  if (run_cmd({exe, "restore", device, "--memory",
               "file=" + restored + ",size=" + std::to_string(region_bytes)}) != 0)
    return fail("restore failed");
  Mapping a = map_file(region), b = map_file(restored);
  if (!a.valid() || !b.valid()) return fail("cannot map the regions to compare");
  bool all_ok = true;
  for (const DemoSlice& s : slices) {
    Mapping src = map_file(work + "/" + s.name + ".src");
    bool same = src.valid() &&
                std::memcmp(a.data() + s.offset_bytes, src.data(), s.length_bytes) == 0 &&
                std::memcmp(b.data() + s.offset_bytes, src.data(), s.length_bytes) == 0;
    std::cout << "  " << s.name << ": " << format_bytes(s.length_bytes)
              << (same ? " restored byte for byte" : " MISMATCH") << "\n";
    all_ok &= same;
  }
  if (!all_ok) return fail("restored memory differs from what was written");
  std::cout << "== 6. clean up\n";
  cleanup.run();
  std::cout << "demo finished: every slice was mirrored to " << device
            << " and restored exactly\n";
  return kOk;
}

}  // namespace

void add_demo(CLI::App& app, int& rc) {
  CLI::App* c = app.add_subcommand(
      "demo",
      "Run the whole job on an emulated 256 MiB region and a 1 GiB image");
  c->callback([&rc] { rc = run_demo(); });
}

}  // namespace pcimirror::cli
