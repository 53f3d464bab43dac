// pcimirror status DEVICE|MOUNTPOINT [--json]
#include <sys/xattr.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "fs/allocator.h"
#include "io/units.h"

namespace pcimirror::cli {
namespace {

nlohmann::json extents_json(const MirrorCopy* c) {
  nlohmann::json out = nlohmann::json::array();
  if (!c) return out;
  for (const Extent& x : c->extents)
    out.push_back({{"start_sector", x.start_sector}, {"sectors", x.sectors}});
  return out;
}

double mb_per_s(uint64_t bytes, uint64_t ns) {
  return ns ? static_cast<double>(bytes) * 1e3 / static_cast<double>(ns) : 0.0;
}

// The daemon's live view of a slice (user.pcimirror.* xattrs), when status
// was given a mount point.
std::string live_xattr(const std::string& mountpoint, const std::string& slice,
                       const char* key) {
  if (mountpoint.empty()) return {};
  char v[64] = {};
  const std::string path = mountpoint + "/" + slice;
  ssize_t n = ::getxattr(path.c_str(), (std::string("user.pcimirror.") + key).c_str(), v,
                         sizeof v - 1);
  return n > 0 ? std::string(v, static_cast<size_t>(n)) : std::string();
}

// A root xattr of the daemon (fs/slice_fs.h kRootXattrNames), any length;
// "" when not mounted or unset.
std::string root_xattr(const std::string& mountpoint, const char* key) {
  if (mountpoint.empty()) return {};
  const std::string name = std::string("user.pcimirror.") + key;
  ssize_t n = ::getxattr(mountpoint.c_str(), name.c_str(), nullptr, 0);
  if (n <= 0) return {};
  std::string v(static_cast<size_t>(n) + 256, '\0');
  n = ::getxattr(mountpoint.c_str(), name.c_str(), v.data(), v.size());
  if (n <= 0) return {};
  v.resize(static_cast<size_t>(n));
  return v;
}

// The memory guard's view (docs/DESIGN.md, "Never mirror garbage"): the
// daemon's, when mounted; "unchecked" offline, since status does not map
// device memory.
struct GuardView {
  std::string memory_state, memory_message, canary_state, last_sync_error;
  // The protection state (fs/ups_watch.h), a JSON object; null offline.
  nlohmann::json protection;
};

GuardView guard_view(const std::string& mountpoint, const SliceTable& t) {
  GuardView g;
  if (mountpoint.empty()) {
    g.memory_state = "unchecked";
    g.canary_state = t.canary ? "unchecked" : "none";
    return g;
  }
  g.memory_state = root_xattr(mountpoint, "memory_state");
  g.memory_message = root_xattr(mountpoint, "memory_message");
  g.canary_state = root_xattr(mountpoint, "canary");
  g.last_sync_error = root_xattr(mountpoint, "last_sync_error");
  g.protection = nlohmann::json::parse(root_xattr(mountpoint, "protection"),
                                       nullptr, /*allow_exceptions=*/false);
  if (g.protection.is_discarded() || !g.protection.is_object())
    g.protection = {{"state", "unknown"},
                    {"reason", "the daemon reports no protection state"}};
  return g;
}

// The shutdown record (docs/FORMAT.md §4), as `ndctl` shows
// shutdown_state: a `mounted` mark that no daemon holds is a dirty
// shutdown that the next mount counts, so status counts it already.
struct ShutdownView {
  std::string last_shutdown;  // "clean" or "dirty"
  uint64_t dirty_shutdowns = 0;
  int64_t last_dirty_shutdown_ns = 0;
  bool pending = false;  // counted at the next mount
};

ShutdownView shutdown_view(const SliceTable& t, bool mounted_now) {
  ShutdownView v;
  v.pending = t.mounted && !mounted_now;
  v.last_shutdown =
      v.pending || (mounted_now && t.last_shutdown_dirty) ? "dirty" : "clean";
  v.dirty_shutdowns = t.dirty_shutdowns + (v.pending ? 1 : 0);
  v.last_dirty_shutdown_ns = t.last_dirty_shutdown_ns;
  return v;
}

int run(const std::string& target, bool json) {
  std::string device = target;
  std::string mountpoint;
  if (auto d = device_of_mountpoint(target)) {
    device = *d;
    mountpoint = target;
  }
  auto vol = open_volume(device, false);
  if (!vol.ok() && !mountpoint.empty()) {
    // The device is unreadable (it vanished, its server died): what the
    // daemon knows still tells the user what happened.
    const GuardView guard = guard_view(mountpoint, SliceTable{});
    if (json) {
      nlohmann::json j;
      j["device"] = device;
      j["mountpoint"] = mountpoint;
      j["device_error"] = vol.error().what();
      j["memory_state"] = guard.memory_state;
      j["memory_message"] = guard.memory_message;
      j["last_sync_error"] = guard.last_sync_error;
      j["protection"] = guard.protection;
      std::cout << j.dump(2, ' ', false,
                          nlohmann::json::error_handler_t::replace)
                << "\n";
    } else {
      std::cout << "device      " << device << " (mounted at " << mountpoint
                << "): unreadable: " << vol.error().what() << "\nmemory      "
                << guard.memory_state << "\nlast error  "
                << (guard.last_sync_error.empty() ? "none"
                                                  : guard.last_sync_error)
                << "\n";
    }
    return fail("cannot read the volume on " + device + " (mounted at " +
                mountpoint +
                "); the mirrors on it are as last committed; "
                "reconnect the device and sync again");
  }
  if (!vol.ok()) return fail(vol.error());
  const Superblock& sb = vol->superblock();
  const SliceTable& t = vol->table();
  auto alloc = Allocator::from_table(sb, t);
  const uint64_t free_bytes = alloc.ok() ? alloc->free_sectors() * kSectorBytes : 0;
  const GuardView guard = guard_view(mountpoint, t);
  // Served by a daemon now (given the mount point, or the device of one).
  const bool served =
      !mountpoint.empty() || mountpoint_of_device(device).has_value();
  if (json) {
    nlohmann::json j;
    const ShutdownView sd = shutdown_view(t, served);
    j["shutdown"] = {{"last_shutdown", sd.last_shutdown},
                     {"dirty_shutdowns", sd.dirty_shutdowns},
                     {"last_dirty_shutdown_ns", sd.last_dirty_shutdown_ns},
                     {"mounted_mark", t.mounted},
                     {"uncounted", sd.pending}};
    j["memory_state"] = guard.memory_state;
    j["memory_message"] = guard.memory_message;
    j["last_sync_error"] = guard.last_sync_error;
    j["protection"] = guard.protection;
    if (t.canary)
      j["canary"] = {{"offset_bytes", t.canary->offset_bytes},
                     {"bytes", kCanaryBytes},
                     {"state", guard.canary_state}};
    else
      j["canary"] = nullptr;
    j["device"] = device;
    if (!mountpoint.empty()) j["mountpoint"] = mountpoint;
    j["uuid"] = sb.uuid_string();
    j["label"] = sb.label;
    j["memory_spec"] = sb.memory_spec;
    j["region_bytes"] = sb.region_bytes;
    j["metadata_generation"] = t.generation;
    // docs/FORMAT.md §9: slot version 1 is a volume from before slice IDs,
    // which its next writable mount upgrades.
    j["metadata_slot_version"] = t.slot_version;
    j["slice_ids_feature"] = (sb.incompat_features & kIncompatSliceIds) != 0;
    j["generations_feature"] =
        (sb.incompat_features & kIncompatGenerations) != 0;
    j["next_slice_id"] = t.next_slice_id;
    j["mirror_copies"] = sb.mirror_copies;
    j["logical_block_size"] = sb.logical_block_size;
    j["data_start_sector"] = sb.data_start_sector;
    j["data_sectors"] = sb.data_sectors;
    j["free_bytes"] = free_bytes;
    j["slices"] = nlohmann::json::array();
    for (const SliceEntry& e : t.slices) {
      const MirrorCopy* c = e.committed();
      nlohmann::json s;
      s["id"] = e.id;
      s["name"] = e.name;
      s["offset_bytes"] = e.offset_bytes;
      s["length_bytes"] = e.length_bytes;
      s["generation"] = e.generation();
      s["crc32c"] = c ? c->crc32c : 0;
      s["crc32c_hex"] = [&] {
        char b[16];
        std::snprintf(b, sizeof b, "%08x", c ? c->crc32c : 0u);
        return std::string(b);
      }();
      s["extents"] = extents_json(c);
      s["current_copy"] = e.current_copy;
      s["path"] = to_string(c ? c->path : MirrorPath::kNone);
      s["bytes_moved"] = c ? e.length_bytes : 0;
      s["last_sync_ns"] = c ? c->sync_time_ns : 0;
      s["sync_duration_ns"] = c ? c->sync_duration_ns : 0;
      s["sync_mb_per_s"] = c ? mb_per_s(e.length_bytes, c->sync_duration_ns) : 0.0;
      if (!mountpoint.empty()) {
        s["state"] = live_xattr(mountpoint, e.name, "state");
        s["progress"] = live_xattr(mountpoint, e.name, "progress");
      }
      s["mode"] = e.mode;
      s["uid"] = e.uid;
      s["gid"] = e.gid;
      nlohmann::json copies = nlohmann::json::array();
      for (const MirrorCopy& mc : e.copies)
        copies.push_back({{"generation", mc.generation},
                          {"sync_time_ns", mc.sync_time_ns},
                          {"crc32c", mc.crc32c},
                          {"extents", extents_json(&mc)}});
      s["copies"] = copies;
      j["slices"].push_back(s);
    }
    // Names from older volumes may not be UTF-8: replaced, never a throw.
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
    return kOk;
  }
  std::cout << "device      " << device;
  if (!mountpoint.empty()) std::cout << " (mounted at " << mountpoint << ")";
  std::cout << "\nuuid        " << sb.uuid_string()
            << (sb.label.empty() ? "" : "  label ") << sb.label
            << "\nmemory      " << sb.memory_spec << " ("
            << format_bytes(sb.region_bytes) << ")\nmetadata    generation "
            << t.generation << ", " << sb.mirror_copies
            << (sb.mirror_copies == 1   ? " copy per slice (in place)"
                : sb.mirror_copies == 2 ? " copies per slice (A/B)"
                                        : " copies per slice (the last " +
                                              std::to_string(sb.mirror_copies) +
                                              " generations; pcimirror log)")
            << (vol->needs_upgrade()
                    ? "; formatted before slice IDs (the next writable mount "
                      "upgrades it)"
                    : "")
            << "\ndata area   " << format_bytes(sb.data_sectors * kSectorBytes)
            << ", " << format_bytes(free_bytes) << " free\n";
  {
    const ShutdownView sd = shutdown_view(t, served);
    std::cout << "shutdown    last shutdown: " << sd.last_shutdown << ", "
              << sd.dirty_shutdowns << " dirty shutdowns";
    if (sd.last_dirty_shutdown_ns)
      std::cout << " (the last counted "
                << format_time_ns(sd.last_dirty_shutdown_ns) << ")";
    if (sd.pending)
      std::cout << "; the last mount did not unmount cleanly (counted at the "
                   "next mount)";
    std::cout << "\n";
  }
  std::cout << "memory      " << guard.memory_state
            << (mountpoint.empty() ? " (not mounted)" : "")
            << (guard.memory_message.empty() ? "" : ": ")
            << guard.memory_message << "\ncanary      ";
  if (t.canary)
    std::cout << "region byte " << t.canary->offset_bytes << " (64 bytes), "
              << guard.canary_state << "\n";
  else
    std::cout << "none (pcimirror canary DEVICE OFFSET adds one)\n";
  if (!guard.last_sync_error.empty())
    std::cout << "last error  " << guard.last_sync_error << "\n";
  if (const nlohmann::json& p = guard.protection; p.is_object()) {
    auto text = [&](const char* k) {
      return p.contains(k) && p[k].is_string() ? p[k].get<std::string>()
                                               : std::string();
    };
    auto number = [&](const char* k, const char* unit) {
      if (!p.contains(k) || !p[k].is_number()) return std::string("unknown");
      char b[32];
      std::snprintf(b, sizeof b, "%.4g%s", p[k].get<double>(), unit);
      return std::string(b);
    };
    std::cout << "protection  " << text("state") << ": " << text("reason")
              << "\n";
    if (!text("ups").empty())
      std::cout << "ups         " << text("ups") << ": " << text("ups_status")
                << ", charge " << number("battery_charge", " %") << ", runtime "
                << number("runtime_s", " s") << ", save estimate "
                << number("estimate_s", " s") << "\n";
    if (p.value("writes_refused", false))
      std::cout << "writes      refused with EROFS after a power failure "
                   "(until the UPS is back online)\n";
  }
  std::cout << "\n";
  std::printf("%4s %-16s %12s %12s %5s %-9s %-8s %-19s %9s%s\n", "ID", "SLICE",
              "OFFSET", "LENGTH", "GEN", "PATH", "CRC32C", "LAST SYNC", "MB/s",
              mountpoint.empty() ? "" : "  STATE");
  for (const SliceEntry& e : t.slices) {
    const MirrorCopy* c = e.committed();
    char crc[16] = "-";
    if (c) std::snprintf(crc, sizeof crc, "%08x", c->crc32c);
    char rate[32] = "-";
    if (c && c->sync_duration_ns)
      std::snprintf(rate, sizeof rate, "%.0f", mb_per_s(e.length_bytes, c->sync_duration_ns));
    std::printf("%4llu %-16s %12llu %12s %5llu %-9s %-8s %-19s %9s%s%s\n",
                static_cast<unsigned long long>(e.id), e.name.c_str(),
                static_cast<unsigned long long>(e.offset_bytes),
                format_bytes(e.length_bytes).c_str(),
                static_cast<unsigned long long>(e.generation()),
                to_string(c ? c->path : MirrorPath::kNone), crc,
                format_time_ns(c ? c->sync_time_ns : 0).c_str(), rate,
                mountpoint.empty() ? "" : "  ",
                live_xattr(mountpoint, e.name, "state").c_str());
  }
  std::fflush(stdout);
  return kOk;
}

}  // namespace

void add_status(CLI::App& app, int& rc) {
  struct Args {
    std::string target;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "status", "Show the slices, generations and extents of a volume");
  c->add_option("target", a->target, "Device, image file or mount point")
      ->required();
  c->add_flag("--json", a->json, "Machine-readable output");
  c->callback([a, &rc] { rc = run(a->target, a->json); });
}

}  // namespace pcimirror::cli
