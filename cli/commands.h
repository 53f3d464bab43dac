// Subcommand registration: each cli/cmd_*.cc adds one subcommand to the app
// and stores its exit code in `rc` when it runs.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace pcimirror::cli {

void add_format(CLI::App& app, int& rc);
struct Settings;
void add_mount(CLI::App& app, int& rc, Settings& settings);
void add_status(CLI::App& app, int& rc);
void add_log(CLI::App& app, int& rc);
void add_sync(CLI::App& app, int& rc);
void add_restore(CLI::App& app, int& rc, Settings& settings);
void add_demo(CLI::App& app, int& rc);
void add_devices(CLI::App& app, int& rc);
void add_fsck(CLI::App& app, int& rc);
void add_slice(CLI::App& app, int& rc);
void add_canary(CLI::App& app, int& rc);
void add_events(CLI::App& app, int& rc);
void add_umount(CLI::App& app, int& rc, Settings& settings);

/// The mount.fuse3 form: `pcimirror SOURCE MOUNTPOINT -o OPTIONS`.
int run_mount(const std::string& device, const std::string& mountpoint,
              const std::string& options, bool foreground);

}  // namespace pcimirror::cli
