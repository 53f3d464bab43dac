#include "cli/settings.h"

#include <CLI/CLI.hpp>
#include <cstdlib>

namespace pcimirror::cli {
namespace {

struct Key {
  const char* name;
  bool flag;
  const char* help;
};

// The mount options of pcimirror(8); each is also a config-file key.
constexpr Key kKeys[] = {
    {"file", false, "Emulated region: a file mapped shared"},
    {"memfd", false, "Emulated region: an anonymous memfd"},
    {"size", false, "Size of an emulated region (K/M/G)"},
    {"pci", false, "PCI slot of the board, e.g. 0000:03:00.0"},
    {"vendor", false, "PCI vendor ID of the board, e.g. 0x1af4"},
    {"device", false, "PCI device ID of the board, e.g. 0x1110"},
    {"index", false, "Which of several boards with these IDs (0 first)"},
    {"bar", false, "BAR number"},
    {"window", false, "OFFSET:LENGTH inside the BAR"},
    {"bounce", false, "auto|always|never"},
    {"queue_depth", false, "io_uring requests in flight (16)"},
    {"io_size", false, "Bytes per request (1M)"},
    {"bounce_buffers", false, "Registered bounce buffers (16)"},
    {"max_write", false, "Largest FUSE write (1M)"},
    {"mirror_on_close", false,
     "sync|async|off: mirror when a written file is closed"},
    {"write_behind", false,
     "on|off: mirror chunks while a file is written, not all at close"},
    {"interval", false, "Mirror periodically, e.g. 30s, 5m, 1h (0: never)"},
    {"restore", false, "never|on_mount"},
    {"restore_verify", false,
     "prepass|inline: verify the whole mirror first, or chunk by chunk"},
    {"uid", false, "Owner of the slice files"},
    {"gid", false, "Group of the slice files"},
    {"umask", false, "Mode mask of the slice files (octal)"},
    {"uuid", false, "Refuse a volume with another UUID"},
    {"ro", true, "Read-only mount"},
    {"allow_other", true, "Let other users in (needs default_permissions)"},
    {"default_permissions", true, "Kernel permission checks"},
    {"host_only_writes", true, "Only writes through the mount change memory"},
    {"ignore_device_id", true, "Accept another PCI device or a smaller BAR"},
    {"debug", true, "FUSE debug output"},
};

}  // namespace

std::string Settings::to_options() const {
  std::string out;
  auto add = [&](const std::string& s) {
    if (!out.empty()) out += ',';
    out += s;
  };
  for (const Key& k : kKeys) {
    if (k.flag) {
      auto it = flags.find(k.name);
      if (it != flags.end() && it->second) add(k.name);
    } else if (auto it = values.find(k.name); it != values.end() && !it->second.empty()) {
      add(std::string(k.name) + "=" + it->second);
    }
  }
  return out;
}

void add_settings(CLI::App& app, Settings& s) {
  const std::string group = "Settings (mount options and config-file keys)";
  app.add_option("--source", s.source, "Block device (config key for DEVICE)")
      ->group(group);
  app.add_option("--mountpoint", s.mountpoint, "Mount point (config key)")->group(group);
  for (const Key& k : kKeys) {
    if (k.flag)
      app.add_flag(std::string("--") + k.name, s.flags[k.name], k.help)->group(group);
    else
      app.add_option(std::string("--") + k.name, s.values[k.name], k.help)->group(group);
  }
  app.set_config("--config", "",
                 "Config file: NAME for /etc/pcimirror/NAME.conf, or a path");
  app.allow_config_extras(false);
}

std::vector<std::string> resolve_config_arg(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  const char* env = std::getenv("PCIMIRROR_CONFIG_DIR");
  const std::string dir = env ? env : "/etc/pcimirror";
  for (size_t i = 1; i < args.size(); ++i) {
    std::string* value = nullptr;
    std::string prefix;
    if (args[i] == "--config" && i + 1 < args.size()) {
      value = &args[i + 1];
    } else if (args[i].rfind("--config=", 0) == 0) {
      prefix = "--config=";
      args[i] = args[i].substr(prefix.size());
      value = &args[i];
    }
    if (value && value->find('/') == std::string::npos)
      *value = dir + "/" + *value + ".conf";
    if (value && !prefix.empty()) args[i] = prefix + args[i];
  }
  return args;
}

}  // namespace pcimirror::cli
