// pcimirror umount MOUNTPOINT | --config NAME: mirror every dirty slice
// through the mount (its user.pcimirror.state xattr says "dirty"), then
// unmount and wait for the daemon to release the device. The systemd unit's
// ExecStop.
#include <sys/mount.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/settings.h"
#include "io/unique_fd.h"

namespace pcimirror::cli {
namespace {

int run(const std::string& mountpoint) {
  auto device = device_of_mountpoint(mountpoint);
  if (!device) return fail(mountpoint + " is not a pcimirror mount point");
  // The final mirror goes through the mount, slice by slice, while it is
  // still mounted: a failure is reported here with its errno, and the mount
  // stays, so nothing is lost and the command can be run again once the
  // cause is fixed. The daemon's own final mirror at unmount then finds
  // nothing dirty (unless a write lands meanwhile: its failure makes the
  // daemon exit non-zero, docs/DESIGN.md "Errors").
  std::string failed;
  if (DIR* d = ::opendir(mountpoint.c_str())) {
    while (dirent* de = ::readdir(d)) {
      if (!std::strcmp(de->d_name, ".") || !std::strcmp(de->d_name, "..")) continue;
      const std::string path = mountpoint + "/" + de->d_name;
      char state[32] = {};
      ssize_t n = ::getxattr(path.c_str(), "user.pcimirror.state", state, sizeof state - 1);
      if (n <= 0 || std::strcmp(state, "clean") == 0) continue;
      if (std::strcmp(state, "memory-reset") == 0) {
        // Never mirrored over the last good mirrors: unmounting loses
        // nothing that pcimirror would keep.
        std::cout << "not mirroring slice " << de->d_name
                  << ": its memory was reset since the last mirror (the "
                     "mirrors on "
                  << *device
                  << " are kept; pcimirror restore puts them back)\n";
        continue;
      }
      UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid() || ::fsync(fd.get()) != 0) {
        const int err = errno;
        fail("final mirror of slice '" + std::string(de->d_name) + "' of " +
             *device + " failed (" + std::strerror(err) +
             "): " + control_error_detail(mountpoint, err));
        failed +=
            (failed.empty() ? "'" : ", '") + std::string(de->d_name) + "'";
        continue;
      }
      std::cout << "mirrored dirty slice " << de->d_name << "\n";
    }
    ::closedir(d);
  }
  if (!failed.empty())
    return fail("not unmounting " + mountpoint + ": the final mirror of " +
                failed + " on " + *device +
                " failed, so their memory since the last mirror is not on "
                "the device; fix the cause and run pcimirror umount again (" +
                "umount " + mountpoint +
                " unmounts anyway: the daemon then logs the failure and "
                "exits non-zero)");
  if (::umount2(mountpoint.c_str(), 0) != 0)
    return fail(errno_error("cannot unmount " + mountpoint));
  for (int i = 0; i < 600; ++i) {  // the daemon finishes and releases the device
    BlockDevice::OpenOptions o;
    if (BlockDevice::open(*device, o).ok()) return kOk;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return fail("the daemon for " + *device + " did not exit within 30 s");
}

}  // namespace

void add_umount(CLI::App& app, int& rc, Settings& settings) {
  auto mnt = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand(
      "umount", "Mirror dirty slices, then unmount and wait for the daemon");
  c->fallthrough();
  c->add_option("mountpoint", *mnt, "Mount point (or mountpoint= in the config)");
  // The volume's config file (--config NAME) gives the mount point; the
  // other settings of the file are accepted and play no part here.
  add_settings(*c, settings, 0);
  c->footer(
      "--config NAME (before or after the command) takes the mount point "
      "from /etc/pcimirror/NAME.conf (pcimirror.conf(5)).");
  c->callback([mnt, &rc, &settings] {
    const std::string m = mnt->empty() ? settings.mountpoint : *mnt;
    if (m.empty()) {
      rc = fail("give MOUNTPOINT, or --config NAME whose file sets mountpoint=");
      return;
    }
    rc = run(m);
  });
}

}  // namespace pcimirror::cli
