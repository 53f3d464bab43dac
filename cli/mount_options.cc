#include "cli/mount_options.h"

#include <cstdlib>

#include "io/units.h"
#include "pcimap/region_factory.h"

namespace pcimirror::cli {
namespace {

bool is_generic_fstab_option(const std::string& key) {
  // fstab-only and generic mount(8) flags. mount.fuse3 passes some of them
  // (dev, suid); the mount itself is always nosuid,nodev,noexec.
  static const char* generic[] = {
      "defaults", "nofail",     "noauto",   "auto",      "user",    "users",
      "nouser",   "owner",      "group",    "_netdev",   "rw",      "nosuid",
      "nodev",    "noexec",     "suid",     "dev",       "exec",    "async",
      "sync",     "dirsync",    "atime",    "noatime",   "relatime", "norelatime",
      "strictatime", "lazytime", "nolazytime", "diratime", "nodiratime",
      "iversion", "noiversion", "mand",     "nomand",    "silent",  "loud"};
  for (const char* g : generic)
    if (key == g) return true;
  return key.rfind("x-", 0) == 0 || key == "comment";
}

Result<uint64_t> bounded(const std::string& key, const std::string& value,
                         uint64_t lo, uint64_t hi, bool size) {
  auto v = size ? parse_size_bytes(value, "-o " + key)
                : parse_uint(value, "-o " + key);
  if (!v.ok()) return v;
  if (*v < lo || *v > hi)
    return make_error(EINVAL, "-o " + key + "=" + value + ": must be between " +
                                  std::to_string(lo) + " and " +
                                  std::to_string(hi));
  return v;
}

}  // namespace

Result<MountOptions> parse_mount_options(const std::string& text) {
  MountOptions o;
  MemorySpec memory;
  bool has_memory = false;
  bool ups_tuning = false;  // ups_interval= or ups_margin= given
  for (const auto& [key, value] : split_key_values(text)) {
    const std::string item = value.empty() ? key : key + "=" + value;
    if (MemorySpec::is_memory_key(key)) {
      if (value.empty())
        return make_error(EINVAL, "-o " + key + " needs a value");
      memory.set(key, value);
      has_memory = true;
    } else if (key == "bounce") {
      PCIM_ASSIGN_OR_RETURN(o.mirror.bounce, parse_bounce_mode(value));
    } else if (key == "queue_depth") {
      PCIM_ASSIGN_OR_RETURN(uint64_t v, bounded(key, value, 1, 1024, false));
      o.mirror.engine.queue_depth = static_cast<unsigned>(v);
    } else if (key == "io_size") {
      PCIM_ASSIGN_OR_RETURN(uint64_t v, bounded(key, value, 4096, 64u << 20, true));
      if (v % 4096)
        return make_error(EINVAL, "-o io_size=" + value +
                                      ": must be a multiple of 4096");
      o.mirror.engine.io_size_bytes = static_cast<uint32_t>(v);
    } else if (key == "bounce_buffers") {
      PCIM_ASSIGN_OR_RETURN(uint64_t v, bounded(key, value, 1, 1024, false));
      o.mirror.engine.bounce_buffers = static_cast<unsigned>(v);
    } else if (key == "copy_threads") {
      PCIM_ASSIGN_OR_RETURN(uint64_t v, bounded(key, value, 1, 64, false));
      o.mirror.engine.copy_threads = static_cast<unsigned>(v);
    } else if (key == "max_write") {
      PCIM_ASSIGN_OR_RETURN(uint64_t v, bounded(key, value, 4096, 1u << 20, true));
      o.max_write_bytes = static_cast<uint32_t>(v);
    } else if (key == "restore") {
      if (value == "never") o.restore = RestorePolicy::kNever;
      else if (value == "on_mount") o.restore = RestorePolicy::kOnMount;
      else
        return make_error(EINVAL, "-o restore=" + value +
                                      ": use restore=never or restore=on_mount");
    } else if (key == "ro" && value.empty()) {
      o.read_only = true;
    } else if (key == "allow_other" && value.empty()) {
      o.allow_other = true;
    } else if (key == "default_permissions" && value.empty()) {
      o.default_permissions = true;
    } else if (key == "uuid") {
      if (value.size() != 36)
        return make_error(EINVAL, "-o uuid=" + value +
                                      ": give the volume's UUID as `pcimirror "
                                      "status` prints it (36 characters)");
      o.uuid = value;
    } else if (key == "uid" || key == "gid") {
      PCIM_ASSIGN_OR_RETURN(uint64_t v, bounded(key, value, 0, 0xfffffffe, false));
      (key == "uid" ? o.uid : o.gid) = static_cast<uint32_t>(v);
    } else if (key == "umask") {
      uint64_t v = 0;
      for (char ch : value) {
        if (ch < '0' || ch > '7' || v > 0777)
          return make_error(EINVAL, "-o umask=" + value +
                                        ": give an octal mask from 000 to 777");
        v = v * 8 + static_cast<uint64_t>(ch - '0');
      }
      if (value.empty() || v > 0777)
        return make_error(EINVAL, "-o umask=" + value +
                                      ": give an octal mask from 000 to 777");
      o.umask = static_cast<uint32_t>(v);
    } else if (key == "restore_verify") {
      PCIM_ASSIGN_OR_RETURN(o.mirror.restore_verify, parse_restore_verify(value));
    } else if (key == "mirror_on_close") {
      PCIM_ASSIGN_OR_RETURN(o.mirror_on_close, parse_mirror_on_close(value));
    } else if (key == "interval") {
      PCIM_ASSIGN_OR_RETURN(o.interval_ms, parse_duration_ms(value, "-o interval"));
      if (o.interval_ms != 0 && o.interval_ms < 100)
        return make_error(EINVAL, "-o interval=" + value + ": use at least 100ms, or 0 for never");
    } else if (key == "ups") {
      PCIM_ASSIGN_OR_RETURN(o.ups, parse_ups_target(value));
    } else if (key == "ups_interval") {
      ups_tuning = true;
      PCIM_ASSIGN_OR_RETURN(o.ups_interval_ms,
                            parse_duration_ms(value, "-o ups_interval"));
      if (o.ups_interval_ms < 1000)
        return make_error(EINVAL, "-o ups_interval=" + value +
                                      ": use at least 1s (e.g. 30s)");
    } else if (key == "ups_margin") {
      ups_tuning = true;
      char* end = nullptr;
      const double v = std::strtod(value.c_str(), &end);
      if (value.empty() || end != value.c_str() + value.size() || !(v >= 1) ||
          v > 1000)
        return make_error(EINVAL, "-o ups_margin=" + value +
                                      ": give a factor from 1 to 1000, e.g. 2 "
                                      "or 1.5");
      o.ups_margin = v;
    } else if (key == "write_behind") {
      if (value == "on")
        o.write_behind = true;
      else if (value == "off")
        o.write_behind = false;
      else
        return make_error(EINVAL,
                          "-o write_behind=" + value + ": use on or off");
    } else if (key == "accept_memory" && value.empty()) {
      o.accept_memory = true;
    } else if (key == "host_only_writes" && value.empty()) {
      o.host_only_writes = true;
    } else if (key == "ignore_device_id" && value.empty()) {
      o.mirror.ignore_device_id = true;
    } else if (key == "debug" && value.empty()) {
      o.debug = true;
    } else if (is_generic_fstab_option(key)) {
      // fstab-only options that mean nothing to the filesystem itself.
    } else {
      return make_error(EINVAL, "unknown mount option '" + item +
                                    "'; see pcimirror(8) for the options");
    }
  }
  if (has_memory) o.memory_override = memory.to_string();
  if (!o.ups && ups_tuning)
    return make_error(EINVAL,
                      "-o ups_interval= and ups_margin= need ups= "
                      "too (UPSNAME@HOST[:PORT])");
  if (o.allow_other && !o.default_permissions)
    return make_error(EINVAL, "-o allow_other needs default_permissions too, "
                              "so that the kernel checks other users' access "
                              "to device memory; add default_permissions");
  return o;
}

std::string join_options(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out += ',';
    out += p;
  }
  return out;
}

}  // namespace pcimirror::cli
