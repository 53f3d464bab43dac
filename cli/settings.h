// Settings: the mount options of pcimirror(8). Each is a key of `-o`
// (`-o bounce=always,ro`), an option of the commands that take it
// (`pcimirror mount --bounce always`), and a key of a config file
// (/etc/pcimirror/NAME.conf, pcimirror.conf(5), read with CLI11's config
// support: `bounce = "always"`, `ro = true`). The block device and the mount
// point are the keys `source` and `mountpoint`. Precedence, lowest first:
// config file, --KEY options, -o options.
//
// The table below is the one list of settings: `mount --help`, `restore
// --help`, pcimirror(8), pcimirror.conf(5) and the bash completion follow
// it, and tests/unit/settings_docs_test.cc keeps them in step.
#pragma once

#include <map>
#include <span>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace pcimirror::cli {

/// Which commands a setting applies to (a bit mask).
enum SettingUse : unsigned {
  kUseMount = 1u << 0,    ///< pcimirror mount and the fstab form
  kUseRestore = 1u << 1,  ///< pcimirror restore
};

/// One setting of the table.
struct SettingInfo {
  const char* name;   ///< -o NAME[=VALUE], --NAME, NAME = ... in a config
  bool flag;          ///< true: takes no value (-o NAME, --NAME, NAME = true)
  const char* group;  ///< one of setting_groups()
  const char* value;  ///< the value's form ("N", "a|b"); "" for a flag
  const char* default_value;  ///< what applies when it is not given
  const char* help;           ///< meaning, with the unit of the value
  unsigned use;               ///< SettingUse bits
};

/// Every setting, grouped in the order of setting_groups().
std::span<const SettingInfo> setting_table();

/// The groups of the table in display order: "Memory", "Engine",
/// "Mirroring policy", "Access".
std::span<const char* const> setting_groups();

/// The values given for the settings of one command.
struct Settings {
  std::map<std::string, std::string> values;  ///< key -> value given
  std::map<std::string, bool> flags;          ///< key -> set
  std::string source, mountpoint;

  /// "k=v,flag,..." for everything given, for parse_mount_options().
  std::string to_options() const;
};

/// Registers every setting as a --KEY option of `command`, those that apply
/// to `use` in their group with their value, unit and default, the others
/// hidden (accepted, so one config file serves mount, restore and umount).
/// Also --source and --mountpoint (shown when `use` needs them: mount both,
/// restore the source).
void add_settings(CLI::App& command, Settings& settings, unsigned use);

/// Registers the global `--config NAME|PATH` on `app`. Its keys go to the
/// command given (mount, restore or umount; refused for the others), and
/// unknown keys are an error naming the key.
void add_config_option(CLI::App& app);

/// Rewrites `--config NAME` (no '/') in argv to the path
/// $PCIMIRROR_CONFIG_DIR/NAME.conf, default /etc/pcimirror/NAME.conf.
std::vector<std::string> resolve_config_arg(int argc, char** argv);

}  // namespace pcimirror::cli
