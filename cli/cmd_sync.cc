// pcimirror sync MOUNTPOINT [NAME...]: mirror slices now. Each slice file is
// fsync()ed through the mount; the daemon mirrors and commits before fsync
// returns.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "fs/control_xattr.h"
#include "io/unique_fd.h"

namespace pcimirror::cli {
namespace {

// Several slices: one group commit through the root's user.pcimirror.sync.
int group_sync(const std::string& mountpoint, const std::string& device,
               const std::vector<std::string>& names, bool all) {
  std::string value;  // empty: every slice (names could exceed XATTR_SIZE_MAX)
  uint64_t bytes = 0;
  for (const std::string& n : names) {
    if (!all) value += n + "\n";
    struct stat st {};
    if (::stat((mountpoint + "/" + n).c_str(), &st) == 0) bytes += static_cast<uint64_t>(st.st_size);
  }
  auto t0 = std::chrono::steady_clock::now();
  if (::setxattr(mountpoint.c_str(), kSyncXattr, value.data(), value.size(),
                 0) != 0) {
    const int err = errno;
    return fail("group sync of " + std::to_string(names.size()) +
                " slices on " + mountpoint + " (" + device + ") failed (" +
                std::strerror(err) +
                "): " + control_error_uncommitted(mountpoint, err));
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const std::string& n : names) std::printf("synced %s\n", n.c_str());
  std::printf("synced %zu slices, %llu bytes in %.3f s, %.0f MB/s, one commit\n", names.size(),
              static_cast<unsigned long long>(bytes), s,
              s > 0 ? static_cast<double>(bytes) / s / 1e6 : 0.0);
  return kOk;
}

int run(const std::string& mountpoint, std::vector<std::string> names,
        bool accept_memory) {
  const auto device_opt = device_of_mountpoint(mountpoint);
  if (!device_opt)
    return fail(mountpoint + " is not a pcimirror mount point; mount the "
                             "volume first (pcimirror mount DEVICE " +
                mountpoint + ")");
  const std::string& device = *device_opt;
  if (accept_memory) {
    // The daemon writes and commits a new canary nonce and marks every
    // slice dirty; the sync below then mirrors the memory as it is.
    if (::setxattr(mountpoint.c_str(), kAcceptMemoryXattr, "", 0, 0) != 0) {
      const int err = errno;
      return fail("accepting the memory of " + mountpoint + " (" + device +
                  ") failed (" + std::strerror(err) +
                  "): " + control_error_uncommitted(mountpoint, err));
    }
    std::printf("accepted the memory of %s as it is now (new canary nonce)\n",
                mountpoint.c_str());
  }
  const bool all = names.empty();
  if (all) {
    DIR* d = ::opendir(mountpoint.c_str());
    if (!d) return fail(errno_error("cannot list " + mountpoint));
    while (dirent* de = ::readdir(d))
      if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, ".."))
        names.push_back(de->d_name);
    ::closedir(d);
  }
  if (names.size() != 1) return group_sync(mountpoint, device, names, all);
  int rc = kOk;
  for (const std::string& name : names) {
    const std::string path = mountpoint + "/" + name;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      rc = fail(errno_error("slice '" + name + "' on " + mountpoint));
      continue;
    }
    const off_t bytes = ::lseek(fd.get(), 0, SEEK_END);
    auto t0 = std::chrono::steady_clock::now();
    // The daemon publishes "done/total" in user.pcimirror.progress.
    Progress bar("sync " + name, static_cast<uint64_t>(bytes));
    std::atomic<bool> done{false};
    std::thread poller;
    if (bar.active())
      poller = std::thread([&] {
        while (!done) {
          char v[64] = {};
          if (::getxattr(path.c_str(), "user.pcimirror.progress", v, sizeof v - 1) > 0)
            bar.update(std::strtoull(v, nullptr, 10));
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      });
    const int fr = ::fsync(fd.get());
    const int fsync_errno = errno;
    done = true;
    if (poller.joinable()) poller.join();
    bar.finish();
    if (fr != 0) {
      // The errno is the mirror's own (ENOSPC from a full device, EIO, ...);
      // the daemon's message names the device and the cause.
      rc = fail("sync of slice '" + name + "' on " + mountpoint + " (" +
                device + ") failed (" + std::strerror(fsync_errno) +
                "): " + control_error_uncommitted(mountpoint, fsync_errno));
      continue;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("synced %-16s %12lld bytes in %7.3f s  %8.0f MB/s\n", name.c_str(),
                static_cast<long long>(bytes), s,
                s > 0 ? static_cast<double>(bytes) / s / 1e6 : 0.0);
  }
  return rc;
}

}  // namespace

void add_sync(CLI::App& app, int& rc) {
  struct Args {
    std::string mountpoint;
    std::vector<std::string> names;
    bool accept_memory = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "sync", "Mirror slices of a mounted volume now; returns when committed");
  c->add_option("mountpoint", a->mountpoint, "Mount point")->required();
  c->add_option("names", a->names, "Slices to mirror (default: all)");
  c->add_flag("--accept-memory", a->accept_memory,
              "Declare the memory as it is now the truth (after a board "
              "reset that restore should not undo): a new canary nonce, "
              "then the mirror");
  c->callback(
      [a, &rc] { rc = run(a->mountpoint, a->names, a->accept_memory); });
}

}  // namespace pcimirror::cli
