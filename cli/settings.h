// Settings: every mount option is also a top-level option (--bounce=auto)
// and a key of a config file (/etc/pcimirror/NAME.conf, read with CLI11's
// config support: `bounce = "auto"`, `ro = true`). The block device and the
// mount point are the keys `source` and `mountpoint`. Precedence, lowest
// first: config file, --KEY options, -o options.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace pcimirror::cli {

struct Settings {
  std::map<std::string, std::string> values;  ///< key -> value given
  std::map<std::string, bool> flags;          ///< key -> set
  std::string source, mountpoint;

  /// "k=v,flag,..." for everything given, for parse_mount_options().
  std::string to_options() const;
};

/// Registers every setting on `app` (group "Settings"), plus `--config`
/// with unknown keys refused.
void add_settings(CLI::App& app, Settings& settings);

/// Rewrites `--config NAME` (no '/') in argv to the path
/// $PCIMIRROR_CONFIG_DIR/NAME.conf, default /etc/pcimirror/NAME.conf.
std::vector<std::string> resolve_config_arg(int argc, char** argv);

}  // namespace pcimirror::cli
