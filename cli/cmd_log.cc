// pcimirror log DEVICE|MOUNTPOINT [NAME...] [--json]: each slice's committed
// generations, newest first (docs/FORMAT.md §7: a volume formatted with
// --copies N keeps the last N). Reads the table as `status` does: the
// device read-only and shared, also under a mount.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "fs/slice_table.h"
#include "io/units.h"

namespace pcimirror::cli {
namespace {

// ISO 8601 in UTC, "2026-12-02T13:40:01Z", of a wall-clock ns timestamp;
// "-" for 0.
std::string iso_utc(int64_t ns) {
  if (ns == 0) return "-";
  std::time_t t = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}

int run(const std::string& target, const std::vector<std::string>& names,
        bool json) {
  std::string device = target;
  std::string mountpoint;
  if (auto d = device_of_mountpoint(target)) {
    device = *d;
    mountpoint = target;
  }
  auto vol = open_volume(device, false);
  if (!vol.ok()) return fail(vol.error());
  const SliceTable& t = vol->table();
  std::vector<const SliceEntry*> chosen;
  if (names.empty()) {
    for (const SliceEntry& e : t.slices) chosen.push_back(&e);
  } else {
    for (const std::string& n : names) {
      const SliceEntry* e = t.find_name(n);
      if (!e)
        return fail(slice_id_of(t, n).error().what() + " on " + device +
                    "; 'pcimirror status " + target + "' lists the slices");
      chosen.push_back(e);
    }
  }
  if (json) {
    nlohmann::json j;
    j["device"] = device;
    if (!mountpoint.empty()) j["mountpoint"] = mountpoint;
    j["mirror_copies"] = vol->superblock().mirror_copies;
    j["slices"] = nlohmann::json::array();
    for (const SliceEntry* e : chosen) {
      nlohmann::json s;
      s["id"] = e->id;
      s["name"] = e->name;
      s["length_bytes"] = e->length_bytes;
      s["current_generation"] = e->committed() ? e->committed()->generation : 0;
      s["generations"] = nlohmann::json::array();
      for (uint32_t i : e->copies_by_generation()) {
        const MirrorCopy& c = e->copies[i];
        s["generations"].push_back({{"generation", c.generation},
                                    {"current", i == e->current_copy},
                                    {"copy", i},
                                    {"sync_time", iso_utc(c.sync_time_ns)},
                                    {"sync_time_ns", c.sync_time_ns},
                                    {"sync_duration_ns", c.sync_duration_ns},
                                    {"bytes", e->length_bytes},
                                    {"crc32c", c.crc32c},
                                    {"crc32c_hex", hex32(c.crc32c)},
                                    {"path", to_string(c.path)}});
      }
      j["slices"].push_back(std::move(s));
    }
    // Names from older volumes may not be UTF-8: replaced, never a throw.
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
    return kOk;
  }
  bool first = true;
  for (const SliceEntry* e : chosen) {
    if (!first) std::printf("\n");
    first = false;
    const auto order = e->copies_by_generation();
    std::printf("slice %s (ID %llu): %zu of %zu copies written\n",
                e->name.c_str(), static_cast<unsigned long long>(e->id),
                order.size(), e->copies.size());
    if (order.empty()) {
      std::printf("  never mirrored\n");
      continue;
    }
    std::printf("  %-2s %10s  %-20s  %12s  %-8s  %-9s  %4s\n", "", "GEN",
                "SYNC TIME (UTC)", "BYTES", "CRC32C", "PATH", "COPY");
    for (uint32_t i : order) {
      const MirrorCopy& c = e->copies[i];
      std::printf("  %-2s %10llu  %-20s  %12llu  %-8s  %-9s  %4u\n",
                  i == e->current_copy ? "*" : "",
                  static_cast<unsigned long long>(c.generation),
                  iso_utc(c.sync_time_ns).c_str(),
                  static_cast<unsigned long long>(e->length_bytes),
                  hex32(c.crc32c).c_str(), to_string(c.path), i);
    }
  }
  std::printf(
      "\n* current generation; 'pcimirror restore DEVICE --generation "
      "G NAME' restores another\n");
  std::fflush(stdout);
  return kOk;
}

}  // namespace

void add_log(CLI::App& app, int& rc) {
  struct Args {
    std::string target;
    std::vector<std::string> names;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "log", "List each slice's committed generations, newest first");
  c->add_option("target", a->target, "Device, image file or mount point")
      ->required();
  c->add_option("names", a->names, "Slices to list (default: all)");
  c->add_flag("--json", a->json, "Machine-readable output");
  c->callback([a, &rc] { rc = run(a->target, a->names, a->json); });
}

}  // namespace pcimirror::cli
