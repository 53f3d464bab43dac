// pcimirror mount DEVICE MOUNTPOINT [-o OPTIONS] [-f]
//
// Without -f the command forks: the child sets up the volume, the region,
// the engine and the mount, then tells the parent "ready" (or the one-line
// error) through a pipe, so the parent exits 0 only once the mount is live
// and start-up errors still reach the terminal.
#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/mount_options.h"
#include "cli/settings.h"
#include "fs/events.h"
#include "fs/fuse_ops.h"
#include "fs/slice_fs.h"
#include "fs/ups_watch.h"
#include "io/log.h"
#include "io/units.h"

namespace pcimirror::cli {
namespace {

// Reports start-up success or failure to the waiting parent (background) or
// the terminal (foreground).
class StartupChannel {
 public:
  explicit StartupChannel(int fd) : fd_(fd) {}
  int error(const Error& e) { return error(e.what()); }
  int error(const std::string& msg) {
    if (fd_ < 0) return fail(msg);
    std::string m = "E" + msg;
    (void)!::write(fd_, m.data(), m.size());
    ::close(fd_);
    fd_ = -1;
    return kFailure;
  }
  void ready() {
    if (fd_ < 0) return;
    // Detach: logs go to syslog from here on.
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::close(null);
    }
    log_to_syslog(true);
    (void)!::write(fd_, "K", 1);
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

int serve(const std::string& device, const std::string& mountpoint,
          const MountOptions& mo, StartupChannel& ch) {
  auto vol = open_volume(device, true);
  if (!vol.ok()) return ch.error(vol.error());
  if (!mo.uuid.empty() && strcasecmp(mo.uuid.c_str(),
                                     vol->superblock().uuid_string().c_str()) != 0)
    return ch.error("device " + device + " holds volume " +
                    vol->superblock().uuid_string() + ", not " + mo.uuid +
                    " given by uuid=; check the device name (pcimirror status " +
                    device + ")");
  auto spec = effective_memory_spec(vol->superblock(), mo.memory_override);
  if (!spec.ok()) return ch.error(spec.error());
  auto region = open_region(*spec);
  if (!region.ok()) return ch.error(region.error());
  auto engine = MirrorEngine::create(*vol, **region, mo.mirror);
  if (!engine.ok()) return ch.error(engine.error());
  // State changes as events (fs/events.h): the memory guard's from here on.
  EventLog events(vol->superblock().uuid_string(), device, mountpoint);
  (*engine)->set_memory_observer(
      [&events](MemoryState from, MemoryState to, const std::string& why) {
        if (to == MemoryState::kDeviceLost)
          events.emit(EventType::kDeviceLost, why);
        else if (to == MemoryState::kMemoryReset)
          events.emit(EventType::kMemoryReset, why);
        else if (from == MemoryState::kDeviceLost)
          events.emit(EventType::kDeviceBack, why);
        else
          events.emit(EventType::kMemoryAccepted, why);
      });
  {
    // The first mirror after the mount as fast as the next ones
    // (docs/DESIGN.md, "The copy stage"): map the slices' pages now.
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t bytes = (*engine)->prefault_windows();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t0)
                        .count();
    log_debug("prefaulted " + std::to_string(bytes) + " bytes of " +
              (*region)->name() + " in " + std::to_string(ms) + " ms");
  }
  if (mo.restore == RestorePolicy::kOnMount) {
    for (const SliceEntry& e : vol->table().slices) {
      auto r = (*engine)->restore(e.id);
      if (!r.ok())
        return ch.error("restore on mount of " + device + " failed: " +
                        r.error().what() +
                        "; mount with restore=never to serve memory as it is");
      if (!r->note.empty()) log_warning("slice '" + e.name + "': " + r->note);
    }
  }
  // A volume formatted before stable slice IDs is upgraded in one
  // crash-safe commit before anything is served (docs/FORMAT.md §9): after
  // every check that can refuse the mount (memory, identity, restore), so a
  // refused mount leaves the volume as it was. A read-only mount reads it
  // as it is. Nothing else uses the volume yet.
  if (!mo.read_only && !vol->read_only()) {
    auto up = vol->upgrade();
    if (!up.ok())
      return ch.error(
          "upgrading the volume on " + device +
          " to metadata slot version 3 failed: " + up.error().what() +
          "; its slices, windows and mirrors are unchanged (the metadata "
          "slot may already be in the new format, docs/FORMAT.md §9); fix "
          "the device error and mount again, or mount with -o ro to read it");
  }
  SliceFsOptions fo;
  fo.read_only = mo.read_only || vol->read_only();
  fo.uid = mo.uid;
  fo.gid = mo.gid;
  fo.umask = mo.umask;
  fo.mirror_on_close = mo.mirror_on_close;
  fo.interval_ms = mo.interval_ms;
  fo.host_only_writes = mo.host_only_writes;
  fo.write_behind = mo.write_behind;
  fo.events = &events;
  SliceFs fs(**engine, fo);
  // The UPS watch (ups=), started with the background workers once the
  // mount is live and stopped before the final mirror at unmount.
  std::unique_ptr<UpsWatch> ups;
  // The memory guard at mount (docs/DESIGN.md, "Never mirror garbage"):
  // after restore=on_mount the memory holds the mirrors again, so a new
  // canary nonce is committed; with accept_memory the memory as it is is
  // declared the truth. Otherwise memory that was reset or a device that
  // does not answer is served as it is, and every mirror is refused until
  // restore or accept.
  if (!fo.read_only && mo.restore == RestorePolicy::kOnMount) {
    if (Status c = (*engine)->renew_canary("every slice was restored at mount");
        !c.ok())
      return ch.error("restore on mount of " + device +
                      " restored every slice but could not record a new "
                      "canary: " +
                      c.error().what());
  } else if (!fo.read_only && mo.accept_memory) {
    if (Status c = fs.accept_memory("the memory at mount was declared the "
                                    "truth (-o accept_memory)");
        !c.ok())
      return ch.error("-o accept_memory on " + device +
                      " failed: " + c.error().what());
  } else if (Status c = (*engine)->check_memory("at mount"); !c.ok()) {
    log_warning("serving " + device +
                " with mirrors refused: " + c.error().what());
  }
  // The shutdown record (docs/FORMAT.md §4, as ndctl's shutdown_state): a
  // writable mount commits the `mounted` mark; finding it set means the
  // previous mount ended without a clean unmount, which is counted.
  if (!fo.read_only) {
    bool dirty = false;
    uint64_t count = 0;
    Status m = (*engine)->commit_edit([&](SliceTable& t) -> Status {
      dirty = t.mounted;
      if (dirty) {
        ++t.dirty_shutdowns;
        t.last_dirty_shutdown_ns = wall_clock_ns();
      }
      t.last_shutdown_dirty = dirty;
      t.mounted = true;
      count = t.dirty_shutdowns;
      return {};
    });
    if (!m.ok())
      return ch.error("recording the mount in the metadata of " + device +
                      " failed: " + m.error().what() +
                      "; nothing else was written");
    if (dirty) {
      const std::string why =
          "last shutdown of " + device +
          " was dirty: the previous mount ended without a clean unmount (a "
          "crash, a kill or a power loss), so writes after each slice's last "
          "mirror may be lost; " +
          std::to_string(count) + " dirty shutdowns so far (pcimirror status " +
          device + ")";
      log_warning(why);
      events.emit(EventType::kDirtyShutdown, why,
                  {{"dirty_shutdowns", std::to_string(count)}});
    }
  }
  FuseMountOptions fm;
  fm.mountpoint = mountpoint;
  fm.fsname = device;
  fm.read_only = fo.read_only;
  fm.allow_other = mo.allow_other;
  fm.default_permissions = mo.default_permissions;
  fm.debug = mo.debug;
  fm.max_write_bytes = mo.max_write_bytes;
  bool mounted = false;
  Status s = serve_fuse(fs, fm, [&] {
    mounted = true;
    // Read before start_background(): from then on the interval and async
    // workers commit, replacing the volume's table (read it through the
    // engine, under its lock, if ever needed later).
    const size_t slices = vol->table().slices.size();
    log_info("serving " + std::to_string(slices) + " slices of " + device +
             " at " + mountpoint + " (memory " + (*region)->name() + ")");
    ch.ready();
    fs.start_background();
    if (mo.ups && !fo.read_only) {
      UpsWatchOptions uo;
      uo.target = *mo.ups;
      uo.interval_ms = mo.ups_interval_ms;
      uo.margin = mo.ups_margin;
      uo.events = &events;
      ups = std::make_unique<UpsWatch>(fs, **engine, uo);
    } else if (mo.ups) {
      log_warning("ups=" + mo.ups->to_string() +
                  " ignored: the mount is read-only, nothing to save");
    }
    // systemd Type=notify (sd_notify(3)); a no-op without NOTIFY_SOCKET.
    sd_notifyf(0, "READY=1\nSTATUS=serving %zu slices of %s at %s", slices,
               device.c_str(), mountpoint.c_str());
  }, [&] {
    sd_notify(0, "STOPPING=1\nSTATUS=mirroring dirty slices and unmounting");
    ups.reset();
    fs.stop_background();
  });
  if (!s.ok() && !mounted) {
    // Nothing was served: the mounted mark goes again, so the next mount
    // does not count this one as a dirty shutdown (a dirty shutdown found
    // before stays counted).
    if (!fo.read_only) {
      Status c = (*engine)->commit_edit([](SliceTable& t) -> Status {
        t.mounted = false;
        return {};
      });
      if (!c.ok())
        log_error("clearing the mounted mark of " + device +
                  " after the failed mount failed: " + c.error().what() +
                  "; the next mount reports a dirty shutdown");
    }
    return ch.error(s.error());
  }
  if (!s.ok()) {
    // A failed final mirror (it names the slices and the device) or a
    // failed FUSE loop: the exit status says so, and so does the unit. The
    // `mounted` mark stays: the next mount reports a dirty shutdown.
    log_error(s.error().what());
    sd_notifyf(0, "STATUS=%s", s.error().what().c_str());
    return kFailure;
  }
  // A clean unmount: every slice mirrored after its last write.
  if (!fo.read_only) {
    if (!fs.all_clean()) {
      log_warning("unmounted " + mountpoint +
                  " with slices not mirrored "
                  "since their last write (" +
                  (*engine)->memory_message() +
                  "); the next mount reports a dirty shutdown");
    } else if (Status c = (*engine)->commit_edit([](SliceTable& t) -> Status {
                 t.mounted = false;
                 return {};
               });
               !c.ok()) {
      log_error("recording the clean unmount of " + device + " failed: " +
                c.error().what() + "; the next mount reports a dirty shutdown");
      return kFailure;
    }
  }
  log_info("unmounted " + mountpoint);
  return kOk;
}

}  // namespace

int run_mount(const std::string& device_arg, const std::string& mountpoint_arg,
              const std::string& options, bool foreground) {
  // Absolute paths: the daemon leaves the working directory, and the mount's
  // source must name the device for `pcimirror status MOUNTPOINT`.
  const std::string device = std::filesystem::absolute(device_arg).lexically_normal();
  const std::string mountpoint =
      std::filesystem::absolute(mountpoint_arg).lexically_normal();
  auto mo = parse_mount_options(options);
  if (!mo.ok()) return fail(mo.error());
  set_log_level(mo->debug ? LogLevel::kDebug : LogLevel::kInfo);
  struct stat st {};
  if (::stat(mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return fail("mount point " + mountpoint +
                " is not a directory; create it with mkdir");
  if (foreground) {
    StartupChannel ch(-1);
    return serve(device, mountpoint, *mo, ch);
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return fail(errno_error("pipe"));
  pid_t pid = ::fork();
  if (pid < 0) return fail(errno_error("fork"));
  if (pid > 0) {
    ::close(fds[1]);
    std::string msg;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) != 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      msg.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    if (msg == "K") return kOk;
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (msg.size() > 1 && msg[0] == 'E') return fail(msg.substr(1));
    return fail("the pcimirror daemon for " + device +
                " exited during start-up; run with -f to see why");
  }
  ::close(fds[0]);
  ::setsid();
  if (::chdir("/") != 0) { /* stay where we are */ }
  StartupChannel ch(fds[1]);
  return serve(device, mountpoint, *mo, ch);
}

void add_mount(CLI::App& app, int& rc, Settings& settings) {
  struct Args {
    std::string device, mountpoint;
    std::vector<std::string> options;
    bool foreground = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "mount", "Serve the slices of a volume as files at a mount point");
  c->fallthrough();  // --config belongs to the app
  c->add_option("device", a->device,
                "Block device or image file (or source= in the config)");
  c->add_option("mountpoint", a->mountpoint,
                "Directory to mount on (or mountpoint= in the config)");
  c->add_option("-o", a->options,
                "Settings as KEY=VALUE,FLAG,...: every --KEY "
                "below, e.g. -o bounce=always,ro (fstab's generic options "
                "nofail, noauto, x-*, ... are accepted and ignored)")
      ->type_name("OPTIONS")
      ->allow_extra_args(false);
  c->add_flag("-f,--foreground", a->foreground, "Stay in the foreground");
  add_settings(*c, settings, kUseMount);
  auto help = std::make_shared<CLI::Formatter>();
  help->column_width(36);
  c->formatter(help);
  c->footer(
      "Precedence, lowest first: the config file (--config NAME, before or "
      "after the command: /etc/pcimirror/NAME.conf, pcimirror.conf(5)), "
      "--KEY options, -o options. The mount is always nosuid,nodev,noexec. "
      "See pcimirror(8).");
  c->callback([a, &rc, &settings] {
    const std::string dev = a->device.empty() ? settings.source : a->device;
    const std::string mnt = a->mountpoint.empty() ? settings.mountpoint : a->mountpoint;
    if (dev.empty() || mnt.empty()) {
      rc = fail("give DEVICE and MOUNTPOINT, or --config NAME whose file sets "
                "source= and mountpoint=");
      return;
    }
    std::vector<std::string> opts = {settings.to_options()};
    opts.insert(opts.end(), a->options.begin(), a->options.end());
    rc = run_mount(dev, mnt, join_options(opts), a->foreground);
  });
}

}  // namespace pcimirror::cli
