// pcimirror: mirror PCI device memory to a raw partition, served as files.
#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/settings.h"
#include "io/log.h"

namespace {

// mount.fuse3 runs "pcimirror SOURCE MOUNTPOINT -o OPTIONS" for an fstab line
// of type fuse.pcimirror: recognise that form before CLI11 parses.
bool is_mount_helper_form(int argc, char** argv) {
  if (argc < 3) return false;
  static const char* subcommands[] = {
      "format",  "mount", "status", "log",    "sync",   "restore", "demo",
      "devices", "fsck",  "slice",  "canary", "events", "umount",  "help"};
  for (const char* s : subcommands)
    if (std::strcmp(argv[1], s) == 0) return false;
  return argv[1][0] != '-';
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pcimirror::cli;
  if (is_mount_helper_form(argc, argv)) {
    std::string options;
    bool foreground = false;
    for (int i = 3; i < argc; ++i) {
      if (std::strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
        if (!options.empty()) options += ',';
        options += argv[++i];
      } else if (std::strcmp(argv[i], "-f") == 0) {
        foreground = true;
      } else {
        return fail(std::string("unexpected argument '") + argv[i] +
                    "'; the mount helper form is: pcimirror DEVICE MOUNTPOINT "
                    "-o OPTIONS");
      }
    }
    return run_mount(argv[1], argv[2], options, foreground);
  }

  CLI::App app{
      "pcimirror: mirror PCI device memory to a raw partition and back, "
      "serving each slice of memory as a file"};
  app.set_version_flag("--version", std::string("pcimirror ") + PCIMIRROR_VERSION);
  app.require_subcommand(1);
  int rc = kOk;
  // Commands report results themselves; the daemon (mount) raises this.
  pcimirror::set_log_level(pcimirror::LogLevel::kWarning);
  add_config_option(app);
  add_format(app, rc);
  // Shared by the commands that take settings; only the one run fills it.
  Settings settings;
  add_mount(app, rc, settings);
  add_status(app, rc);
  add_log(app, rc);
  add_sync(app, rc);
  add_restore(app, rc, settings);
  add_demo(app, rc);
  add_devices(app, rc);
  add_fsck(app, rc);
  add_slice(app, rc);
  add_canary(app, rc);
  add_events(app, rc);
  add_umount(app, rc, settings);
  // --config NAME means /etc/pcimirror/NAME.conf.
  std::vector<std::string> args = resolve_config_arg(argc, argv);
  std::vector<char*> ptrs;
  for (auto& a : args) ptrs.push_back(a.data());
  try {
    app.parse(static_cast<int>(ptrs.size()), ptrs.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return rc;
}
