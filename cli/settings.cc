#include "cli/settings.h"

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <cstring>

namespace pcimirror::cli {
namespace {

constexpr const char* kGroups[] = {"Memory", "Engine", "Mirroring policy",
                                   "Access"};

constexpr unsigned kBoth = kUseMount | kUseRestore;
constexpr const char* kRecorded = "as recorded at format";

// The settings: mount options of pcimirror(8), keys of pcimirror.conf(5).
// Keep the order: grouped as kGroups.
constexpr SettingInfo kSettings[] = {
    // Memory: any of these replaces the spec recorded at format.
    {"file", false, "Memory", "PATH", kRecorded,
     "Emulated region: a file mapped shared (created at size=)", kBoth},
    {"memfd", false, "Memory", "NAME", kRecorded,
     "Emulated region: an anonymous memfd", kBoth},
    {"size", false, "Memory", "SIZE", kRecorded,
     "Size of an emulated or DMA region, in bytes (K/M/G suffixes)", kBoth},
    {"pci", false, "Memory", "SLOT", kRecorded,
     "PCI slot of the board, e.g. 0000:03:00.0", kBoth},
    {"vendor", false, "Memory", "ID", kRecorded,
     "PCI vendor ID of the board, e.g. 0x1af4", kBoth},
    {"device", false, "Memory", "ID", kRecorded,
     "PCI device ID of the board, e.g. 0x1110", kBoth},
    {"index", false, "Memory", "N", "0",
     "Which of several boards with these IDs (0: the first)", kBoth},
    {"bar", false, "Memory", "N", kRecorded, "BAR number of the board", kBoth},
    {"window", false, "Memory", "OFFSET:LENGTH", "the whole BAR",
     "Part of the BAR, in bytes (K/M/G); OFFSET a multiple of 4096", kBoth},
    {"c2h", false, "Memory", "PATH", kRecorded,
     "DMA region: the card-to-host channel, e.g. /dev/xdma0_c2h_0", kBoth},
    {"h2c", false, "Memory", "PATH", kRecorded,
     "DMA region: the host-to-card channel, e.g. /dev/xdma0_h2c_0", kBoth},
    {"xdma", false, "Memory", "PREFIX", kRecorded,
     "DMA region on channel 0 of an XDMA board: PREFIX_c2h_0 and "
     "PREFIX_h2c_0, e.g. /dev/xdma0",
     kBoth},
    {"card_offset", false, "Memory", "ADDRESS", "0",
     "Card address of the DMA region's first byte (bytes, K/M/G, or 0x hex)",
     kBoth},
    {"dma_align", false, "Memory", "N", "4096",
     "DMA alignment: a buffer whose address differs from the card address "
     "modulo N goes through a staging buffer; a power of two, 1 to 1M",
     kBoth},
    {"ignore_device_id", true, "Memory", "", "off",
     "Accept a PCI device or a BAR size other than the one recorded at "
     "format",
     kBoth},
    // Engine: the io_uring pipeline to and from the partition.
    {"bounce", false, "Engine", "auto|always|never", "auto",
     "always: through the registered bounce pool; never: zero-copy from "
     "pinnable memory (refused on a BAR); auto: the measured rule, today the "
     "bounce pool",
     kBoth},
    {"queue_depth", false, "Engine", "N", "16",
     "io_uring requests in flight, 1 to 1024", kBoth},
    {"io_size", false, "Engine", "SIZE", "1M",
     "Bytes per request, 4K to 64M, a multiple of 4096 (K/M/G)", kBoth},
    {"bounce_buffers", false, "Engine", "N", "16",
     "Registered bounce buffers of io_size bytes each, 1 to 1024 (locked "
     "memory: bounce_buffers x io_size)",
     kBoth},
    {"copy_threads", false, "Engine", "N", "2",
     "Copy workers between memory and the bounce buffers (copies, CRC32Cs), "
     "1 to 64; the ring's thread never copies",
     kBoth},
    {"max_write", false, "Engine", "SIZE", "1M",
     "Largest FUSE write request, in bytes, 4K to 1M (K/M)", kUseMount},
    // Mirroring policy: when mirrors are written and read back.
    {"mirror_on_close", false, "Mirroring policy", "sync|async|off", "sync",
     "What closing a written file does: mirror before close returns (sync), "
     "in the background (async), or nothing (off)",
     kUseMount},
    {"write_behind", false, "Mirroring policy", "on|off", "on",
     "Write each 1 MiB chunk into the next mirror copy while the file is "
     "written, so close only finishes the mirror",
     kUseMount},
    {"interval", false, "Mirroring policy", "DURATION", "0 (never)",
     "Mirror every slice periodically; a number with ms, s, m or h (s if "
     "none), at least 100ms",
     kUseMount},
    {"host_only_writes", true, "Mirroring policy", "", "off",
     "Only writes through the mount change memory: interval= mirrors only "
     "slices written through it",
     kUseMount},
    {"ups", false, "Mirroring policy", "UPSNAME@HOST[:PORT]", "none",
     "Watch this UPS through NUT's upsd (port 3493 if none): on battery "
     "mirror every slice; on low battery or forced shutdown refuse writes "
     "(EROFS) and take a final mirror",
     kUseMount},
    {"ups_interval", false, "Mirroring policy", "DURATION", "30s",
     "Mirror every slice this often while on battery; ms, s, m or h (s if "
     "none), at least 1s",
     kUseMount},
    {"ups_margin", false, "Mirroring policy", "FACTOR", "2",
     "Protected only when the save estimate times this factor fits into "
     "battery.runtime; 1 to 1000",
     kUseMount},
    {"restore", false, "Mirroring policy", "never|on_mount", "never",
     "Write the mirrors into device memory before serving", kUseMount},
    {"accept_memory", true, "Mirroring policy", "", "off",
     "Declare the memory at mount the truth, under a new canary nonce, even "
     "if the canary says it was reset (as sync --accept-memory)",
     kUseMount},
    {"restore_verify", false, "Mirroring policy", "MODE", "auto",
     "Verify the whole mirror, then copy it (prepass), or verify each 1 MiB "
     "chunk just before copying it (inline: one pass); auto is inline into "
     "memory whose canary says it was reset, prepass otherwise",
     kBoth},
    // Access: who may use the slice files, and which volume is served.
    {"ro", true, "Access", "", "off", "Read-only mount", kUseMount},
    {"uid", false, "Access", "N", "as recorded (chown)",
     "Owner of every slice file (numeric user ID); chown is then refused",
     kUseMount},
    {"gid", false, "Access", "N", "as recorded (chown)",
     "Group of every slice file (numeric group ID); chown is then refused",
     kUseMount},
    {"umask", false, "Access", "OOO", "as recorded (chmod)",
     "Mode mask, octal: every slice file gets mode 0666 & ~umask; chmod is "
     "then refused",
     kUseMount},
    {"allow_other", true, "Access", "", "off",
     "Let other users in; needs default_permissions", kUseMount},
    {"default_permissions", true, "Access", "", "off",
     "The kernel checks access against each file's mode and owner", kUseMount},
    {"uuid", false, "Access", "UUID", "any volume",
     "Refuse a volume with another UUID (as `pcimirror status` prints it)",
     kUseMount},
    {"debug", true, "Access", "", "off",
     "FUSE debug output and debug log lines", kUseMount},
};

// CLI11's TOML reader, with each key handed to the command being run (its
// --KEY options) instead of to the top-level app, and unknown keys refused
// by name.
class CommandConfig : public CLI::ConfigTOML {
 public:
  explicit CommandConfig(const CLI::App* app) : app_(app) {}

  std::vector<CLI::ConfigItem> from_config(std::istream& in) const override {
    std::vector<CLI::ConfigItem> read = CLI::ConfigTOML::from_config(in);
    const CLI::App* command = nullptr;
    for (const CLI::App* sub : app_->get_subcommands()) command = sub;
    if (command == nullptr ||
        command->get_option_no_throw("--source") == nullptr)
      throw CLI::ConfigError(
          "--config applies to the commands mount, restore and umount");
    for (CLI::ConfigItem& item : read) {
      if (!item.parents.empty()) {
        const bool section = item.name == "++" || item.name == "--";
        throw CLI::ConfigError(
            "config file: " +
            (section ? "section [" + CLI::detail::join(item.parents, ".") + "]"
                     : "key '" + item.fullname() + "'") +
            ": sections and dotted keys are not used; write key = value "
            "(pcimirror.conf(5))");
      }
      const std::string& key = item.name;
      bool known = key == "source" || key == "mountpoint";
      for (const SettingInfo& s : kSettings) known |= key == s.name;
      if (!known)
        throw CLI::ConfigError(
            "config file: unknown key '" + key +
            "'; the keys are source, mountpoint and the settings of "
            "`pcimirror mount --help` (pcimirror.conf(5))");
      item.parents = {command->get_name()};
    }
    return read;
  }

 private:
  const CLI::App* app_;
};

}  // namespace

std::span<const SettingInfo> setting_table() { return kSettings; }

std::span<const char* const> setting_groups() { return kGroups; }

std::string Settings::to_options() const {
  std::string out;
  auto add = [&](const std::string& s) {
    if (!out.empty()) out += ',';
    out += s;
  };
  for (const SettingInfo& k : kSettings) {
    if (k.flag) {
      auto it = flags.find(k.name);
      if (it != flags.end() && it->second) add(k.name);
    } else if (auto it = values.find(k.name);
               it != values.end() && !it->second.empty()) {
      add(std::string(k.name) + "=" + it->second);
    }
  }
  return out;
}

void add_settings(CLI::App& command, Settings& s, unsigned use) {
  command
      .add_option("--source", s.source,
                  "Block device: the config-file key for DEVICE")
      ->type_name("DEVICE")
      ->group(use != 0 ? "Options" : "");
  command
      .add_option("--mountpoint", s.mountpoint,
                  "Mount point: the config-file key for MOUNTPOINT")
      ->type_name("DIR")
      ->group((use & kUseRestore) ? "" : "Options");
  for (const char* group : kGroups) {
    for (const SettingInfo& k : kSettings) {
      if (std::strcmp(k.group, group) != 0) continue;
      const std::string shown = (k.use & use) ? group : "";
      const std::string name = std::string("--") + k.name;
      const std::string help =
          std::string(k.help) + " [default: " + k.default_value + "]";
      if (k.flag)
        command.add_flag(name, s.flags[k.name], help)->group(shown);
      else
        command.add_option(name, s.values[k.name], help)
            ->type_name(k.value)
            ->group(shown);
    }
  }
}

void add_config_option(CLI::App& app) {
  app.set_config("--config", "",
                 "Config file of a volume, for mount, restore and umount: "
                 "NAME for /etc/pcimirror/NAME.conf, or a path "
                 "(pcimirror.conf(5))")
      ->type_name("NAME|PATH");
  app.config_formatter(std::make_shared<CommandConfig>(&app));
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
