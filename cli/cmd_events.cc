// pcimirror events MOUNTPOINT|DEVICE [--no-follow]: the volume's events (one
// JSON line per state change, fs/events.h), as the daemon appended them to
// /run/pcimirror/UUID.events; then, unless --no-follow, the new ones as they
// come, until the volume is unmounted or the command is interrupted.
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "fs/events.h"

namespace pcimirror::cli {
namespace {

int run(const std::string& target, bool follow) {
  std::string device = target, mountpoint;
  if (auto d = device_of_mountpoint(target)) {
    device = *d;
    mountpoint = target;
  } else if (auto m = mountpoint_of_device(target)) {
    mountpoint = *m;
  }
  auto vol = open_volume(device, false);
  if (!vol.ok()) return fail(vol.error());
  const std::string path = event_file_path(vol->superblock().uuid_string());
  if (follow && mountpoint.empty())
    return fail(target +
                " is not mounted, so no events will come; "
                "'pcimirror events " +
                target + " --no-follow' prints the ones recorded since boot");
  std::ifstream in;
  ino_t ino = 0;
  std::streamoff pos = 0;
  std::string partial;
  // Prints what the open file holds past `pos`, whole lines only.
  auto drain = [&] {
    if (!in.is_open()) return;
    in.clear();
    in.seekg(pos);
    std::string chunk((std::istreambuf_iterator<char>(in)),
                      std::istreambuf_iterator<char>());
    pos += static_cast<std::streamoff>(chunk.size());
    partial += chunk;
    size_t nl;
    while ((nl = partial.find('\n')) != std::string::npos) {
      std::cout << partial.substr(0, nl + 1);
      partial.erase(0, nl + 1);
    }
    std::cout.flush();
  };
  for (;;) {
    struct stat st {};
    const bool exists = ::stat(path.c_str(), &st) == 0;
    if (exists && (st.st_ino != ino || st.st_size < pos)) {
      // New or rotated (fs/events.cc renames it to .1 past 1 MiB): the
      // lines the old file got before the rotation first.
      drain();
      in.close();
      in.clear();
      in.open(path);
      ino = st.st_ino;
      pos = 0;
      partial.clear();
    }
    drain();
    if (!follow) return kOk;
    if (!device_of_mountpoint(mountpoint)) {
      std::cerr << "pcimirror: " << mountpoint << " was unmounted\n";
      return kOk;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

void add_events(CLI::App& app, int& rc) {
  struct Args {
    std::string target;
    bool no_follow = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "events", "Show and follow a volume's events, one JSON line each");
  c->add_option("target", a->target, "Mount point (or its device)")->required();
  c->add_flag("--no-follow", a->no_follow,
              "Print the events recorded since boot and exit");
  c->footer(
      "Events: dirty-shutdown, device-lost, device-back, memory-reset, "
      "memory-accepted, sync-failed, sync-recovered, on-battery, "
      "low-battery, forced-shutdown, online, ups-unreachable, protected, "
      "unprotected. Each also goes to the journal with its MESSAGE_ID. See "
      "pcimirror(8), EVENTS.");
  c->callback([a, &rc] { rc = run(a->target, !a->no_follow); });
}

}  // namespace pcimirror::cli
