// pcimirror restore DEVICE [--memory SPEC] [--generation G] [NAME...]: write
// committed mirrors back into device memory after verifying their CRC32Cs.
// Every slice named is tried; a failed one is reported with the device
// memory it wrote, and the command exits 1 naming the failed slices. With
// --generation every slice named must hold generation G, else nothing is
// written.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/mount_options.h"
#include "cli/progress.h"
#include "cli/settings.h"
#include "fs/slice_table.h"
#include "io/units.h"

namespace pcimirror::cli {
namespace {

int run(const std::string& device, const std::string& memory,
        const std::string& options, std::vector<std::string> names,
        uint64_t generation) {
  auto mo = parse_mount_options(options);
  if (!mo.ok()) return fail(mo.error());
  auto vol = open_volume(device, true);
  if (!vol.ok()) return fail(vol.error());
  // Every slice: none named, or every slice of the table named (the
  // canary is renewed after either, see below).
  const bool every_slice =
      names.empty() ||
      std::all_of(vol->table().slices.begin(), vol->table().slices.end(),
                  [&](const SliceEntry& e) {
                    return std::find(names.begin(), names.end(), e.name) !=
                           names.end();
                  });
  if (names.empty())
    for (const SliceEntry& e : vol->table().slices) names.push_back(e.name);
  if (generation != 0) {
    // Every slice named must hold generation G, checked before any memory
    // is touched (FORMAT.md §8).
    std::string missing;
    for (const std::string& name : names) {
      const SliceEntry* e = vol->table().find_name(name);
      if (!e) return fail(slice_id_of(vol->table(), name).error());
      bool has = false;
      for (const MirrorCopy& c : e->copies) has |= c.generation == generation;
      if (!has)
        missing += (missing.empty() ? "" : "; ") + std::string("slice '") +
                   name + "' has no generation " + std::to_string(generation) +
                   ", its generations: " + describe_generations(*e);
    }
    if (!missing.empty())
      return fail("restore --generation " + std::to_string(generation) +
                  ": not every slice named holds that generation (" + missing +
                  "); device memory was left untouched. 'pcimirror log " +
                  device + "' lists each slice's generations");
  }
  auto spec = effective_memory_spec(vol->superblock(),
                                    memory.empty() ? mo->memory_override : memory);
  if (!spec.ok()) return fail(spec.error());
  auto region = open_region(*spec);
  if (!region.ok()) return fail(region.error());
  auto engine = MirrorEngine::create(*vol, **region, mo->mirror);
  if (!engine.ok()) return fail(engine.error());
  // A slice that fails does not stop the others: each is restored or not
  // on its own, and the failures are named at the end (exit 1).
  std::vector<std::string> restored, failed;
  for (const std::string& name : names) {
    uint64_t len = 0;
    for (const SliceEntry& e : vol->table().slices)
      if (e.name == name) len = e.length_bytes;
    auto id = slice_id_of(vol->table(), name);
    if (!id.ok()) {
      fail(id.error());
      failed.push_back(name);
      continue;
    }
    Progress bar("restore " + name, 2 * len);
    RestoreReport partial;
    auto r = (*engine)->restore(
        *id, [&](uint64_t d) { bar.update(d); }, &partial, generation);
    bar.finish();
    if (!r.ok()) {
      fail(r.error());
      failed.push_back(name);
      if (r.error().code == ENOENT) continue;
      if (partial.written.empty()) {
        std::printf("failed   %-16s device memory untouched\n", name.c_str());
      } else {
        uint64_t bytes = 0;
        for (const RestoredRange& w : partial.written) bytes += w.length_bytes;
        std::printf(
            "failed   %-16s %12llu bytes of device memory written: %s\n",
            name.c_str(), static_cast<unsigned long long>(bytes),
            describe_written(partial.written).c_str());
      }
      continue;
    }
    restored.push_back(name);
    if (r->skipped) {
      std::printf("skipped  %-16s %s\n", name.c_str(), r->note.c_str());
      continue;
    }
    double s = static_cast<double>(r->duration_ns) / 1e9;
    std::printf(
        "restored %-16s %12llu bytes generation %llu in %.3f s  %.0f "
        "MB/s%s%s\n",
        name.c_str(), static_cast<unsigned long long>(r->bytes),
        static_cast<unsigned long long>(r->generation), s,
        s > 0 ? static_cast<double>(r->bytes) / s / 1e6 : 0.0,
        r->note.empty() ? "" : "; ", r->note.c_str());
  }
  // Memory holds the mirrors again: a new canary nonce lets the next mount
  // mirror (docs/DESIGN.md, "Never mirror garbage"). Only after every
  // slice: the others' memory may still be reset.
  if (failed.empty() && every_slice) {
    Status c =
        (*engine)->renew_canary("every slice of " + device + " was restored");
    if (!c.ok())
      return fail(
          "every slice was restored, but recording a new canary "
          "failed: " +
          c.error().what() +
          "; run pcimirror restore again, or mount with -o "
          "accept_memory");
    if (vol->table().canary)
      std::printf(
          "canary   renewed at region byte %llu\n",
          static_cast<unsigned long long>(vol->table().canary->offset_bytes));
    return kOk;
  }
  if (failed.empty()) {
    if (vol->table().canary)
      std::printf(
          "note: only the slices named were restored, so the canary was not "
          "renewed; if the memory was reset, mirrors stay refused until "
          "every slice is restored (pcimirror restore %s) or the memory is "
          "accepted (pcimirror sync MOUNTPOINT --accept-memory)\n",
          device.c_str());
    return kOk;
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const std::string& n : v) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? std::string("none") : out;
  };
  return fail(
      "restore failed for " + std::to_string(failed.size()) + " of " +
      std::to_string(names.size()) + " slices (" + join(failed) +
      "); fully restored (or skipped, never mirrored): " + join(restored) +
      "; 'pcimirror fsck " + device + " --verify' reports every damaged copy");
}

}  // namespace

void add_restore(CLI::App& app, int& rc, Settings& settings) {
  struct Args {
    std::string device, memory;
    std::vector<std::string> options;
    std::vector<std::string> names;
    uint64_t generation = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "restore",
      "Write the committed mirrors back into device memory (verified first)");
  c->fallthrough();
  c->add_option("device", a->device, "Block device or image file (or source= in the config)");
  c->add_option("--memory", a->memory,
                "Memory spec to restore into (default: the one recorded at "
                "format)")
      ->type_name("SPEC");
  c->add_option("-o", a->options,
                "Settings as KEY=VALUE,FLAG,...: every --KEY "
                "below, e.g. -o restore_verify=inline")
      ->type_name("OPTIONS")
      ->allow_extra_args(false);
  c->add_option("--generation", a->generation,
                "Restore exactly this committed generation of each slice "
                "(pcimirror log lists them); no fallback")
      ->type_name("G")
      ->check(CLI::PositiveNumber);
  c->add_option("names", a->names, "Slices to restore (default: all)");
  add_settings(*c, settings, kUseRestore);
  auto help = std::make_shared<CLI::Formatter>();
  help->column_width(36);
  c->formatter(help);
  c->footer(
      "Memory settings replace the spec recorded at format, as --memory "
      "does. Precedence, lowest first: the config file (--config NAME), "
      "--KEY options, -o options, --memory. See pcimirror(8).");
  c->callback([a, &rc, &settings] {
    const std::string dev = a->device.empty() ? settings.source : a->device;
    if (dev.empty()) {
      rc = fail("give DEVICE, or --config NAME whose file sets source=");
      return;
    }
    std::vector<std::string> opts = {settings.to_options()};
    opts.insert(opts.end(), a->options.begin(), a->options.end());
    rc = run(dev, a->memory, join_options(opts), a->names, a->generation);
  });
}

}  // namespace pcimirror::cli
