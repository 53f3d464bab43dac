// pcimirror format DEVICE --memory SPEC --slice NAME:OFFSET:LENGTH ...
#include <CLI/CLI.hpp>
#include <array>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "fs/allocator.h"
#include "fs/memory_guard.h"
#include "io/signature_probe.h"
#include "io/units.h"

namespace pcimirror::cli {
namespace {

struct FormatArgs {
  std::string device;
  std::string memory;
  std::vector<std::string> slices;
  std::string label;
  std::string metadata_size = "4M";
  std::string canary;  // OFFSET, empty: no canary
  unsigned copies = kDefaultMirrorCopies;
  std::string slots;  // the old --slots, refused with a pointer to --copies
  bool dry_run = false;
  bool force = false;
};

Result<SliceSpec> parse_slice(const std::string& text) {
  // NAME:OFFSET:LENGTH; the name may not contain ':'.
  size_t a = text.find(':');
  size_t b = a == std::string::npos ? a : text.find(':', a + 1);
  if (a == std::string::npos || b == std::string::npos ||
      text.find(':', b + 1) != std::string::npos)
    return make_error(EINVAL, "--slice '" + text +
                                  "': use NAME:OFFSET:LENGTH, e.g. frames:0:128M");
  SliceSpec s;
  s.name = text.substr(0, a);
  PCIM_ASSIGN_OR_RETURN(s.offset_bytes,
                        parse_size_bytes(text.substr(a + 1, b - a - 1),
                                         "--slice " + text + " offset"));
  PCIM_ASSIGN_OR_RETURN(s.length_bytes,
                        parse_size_bytes(text.substr(b + 1),
                                         "--slice " + text + " length"));
  return s;
}

void print_layout(const Superblock& sb, const SliceTable& t) {
  std::cout
      << "layout of " << format_bytes(sb.device_bytes) << " device:\n"
      << "  superblock        sector 0, backup at sector "
      << sb.backup_superblock_sector << "\n"
      << "  metadata slots    sectors " << sb.meta_slot_sector[0] << " and "
      << sb.meta_slot_sector[1] << ", " << sb.meta_slot_sectors
      << " sectors each\n"
      << "  data area         sectors " << sb.data_start_sector << "-"
      << sb.data_end_sector() << " ("
      << format_bytes(sb.data_sectors * kSectorBytes) << ")\n"
      << "  mirror copies     " << sb.mirror_copies
      << (sb.mirror_copies == 1
              ? " (in place: a crash during sync loses the slice's mirror)"
          : sb.mirror_copies == 2
              ? " (A/B: a crash during sync keeps the previous mirror)"
              : " (the last " + std::to_string(sb.mirror_copies) +
                    " generations of each slice; a sync overwrites the "
                    "oldest)")
      << "\n  memory            " << sb.memory_spec << " ("
      << format_bytes(sb.region_bytes) << ")\n";
  for (const SliceEntry& e : t.slices) {
    std::cout << "  slice " << e.name << ": region [" << e.offset_bytes << ", +"
              << e.length_bytes << ") " << format_bytes(e.length_bytes) << "\n";
    for (size_t c = 0; c < e.copies.size(); ++c) {
      std::cout << "    copy " << c << ":";
      for (const Extent& x : e.copies[c].extents)
        std::cout << " " << x.start_sector << "+" << x.sectors;
      std::cout << " sectors\n";
    }
  }
  if (t.canary)
    std::cout << "  canary            region byte " << t.canary->offset_bytes
              << " (64 bytes)\n";
  auto alloc = Allocator::from_table(sb, t);
  if (alloc.ok())
    std::cout << "  free              "
              << format_bytes(alloc->free_sectors() * kSectorBytes) << "\n";
}

// After a failed format: the 64 bytes the canary overwrote, as they were.
void put_back_canary(Region& region, uint64_t offset_bytes,
                     const std::array<uint8_t, kCanaryBytes>& saved) {
  if (Status s = region.copy_to(offset_bytes, saved.data(), saved.size());
      !s.ok())
    fail("putting back the 64 bytes at region byte " +
         std::to_string(offset_bytes) + " of " + region.name() +
         " failed too: " + s.error().what());
}

int run(const FormatArgs& a) {
  if (!a.slots.empty())
    return fail("--slots " + a.slots +
                " is gone: give --copies N instead, the mirror copies per "
                "slice from 1 to 16 (default 2; --copies 1 is the old "
                "--slots 1)");
  if (a.copies < kMinMirrorCopies || a.copies > kMaxMirrorCopies)
    return fail("--copies " + std::to_string(a.copies) +
                ": give 1 to 16 mirror copies per slice (default 2)");
  FormatRequest req;
  auto spec = MemorySpec::parse(a.memory);
  if (!spec.ok()) return fail(spec.error());
  req.memory_spec = spec->to_string();
  for (const auto& s : a.slices) {
    auto sl = parse_slice(s);
    if (!sl.ok()) return fail(sl.error());
    req.slices.push_back(*sl);
  }
  auto meta = parse_size_bytes(a.metadata_size, "--metadata-size");
  if (!meta.ok()) return fail(meta.error());
  req.meta_slot_bytes = *meta;
  req.label = a.label;
  if (!a.canary.empty()) {
    auto off = parse_size_bytes(a.canary, "--canary");
    if (!off.ok()) return fail(off.error());
    req.canary_offset_bytes = *off;
  }
  req.mirror_copies = a.copies;

  auto region = open_region(*spec);
  if (!region.ok()) return fail(region.error());
  req.region_bytes = (*region)->size_bytes();
  req.pci_vendor_id = (*region)->pci_vendor_id();
  req.pci_device_id = (*region)->pci_device_id();
  req.pci_bar_bytes = (*region)->bar_bytes();

  BlockDevice::OpenOptions oo;
  oo.read_only = a.dry_run;
  oo.exclusive = !a.dry_run;
  auto dev = BlockDevice::open(a.device, oo);
  if (!dev.ok()) return fail(dev.error());
  if (!a.force) {
    auto sig = probe_signature(a.device);
    if (!sig.ok()) return fail(sig.error());
    if (*sig)
      return fail("device " + a.device + " holds " + **sig +
                  "; formatting would destroy it. Check the device name, or "
                  "give --force to overwrite it");
    BlockDevice::OpenOptions ro;
    ro.read_only = true;
    ro.exclusive = false;
    if (auto probe = BlockDevice::open(a.device, ro); probe.ok()) {
      if (auto existing = Volume::load(std::move(probe).value()); existing.ok())
        return fail("device " + a.device +
                    " already holds a pcimirror volume (label '" +
                    existing->superblock().label + "', " +
                    std::to_string(existing->table().slices.size()) +
                    " slices); give --force to overwrite it");
    }
  }
  auto plan = Volume::plan_format(*dev, req);
  if (!plan.ok()) return fail(plan.error());
  print_layout(plan->first, plan->second);
  if (a.dry_run) {
    std::cout << "dry run: nothing written to " << a.device << "\n";
    return kOk;
  }
  // Nothing has been written yet. plan_format checked every size for
  // overflow and the plan as load() will check the volume; check again
  // right before the first write, so that --force never wipes an old
  // volume for a plan that would then fail.
  if (Status ok = Volume::check_plan(*dev, plan->first, plan->second); !ok.ok())
    return fail(ok.error());
  if (a.force) {
    auto wiped = wipe_signatures(a.device);
    if (!wiped.ok()) return fail(wiped.error());
    if (*wiped) std::cout << "wiped " << *wiped << " old signature(s) from " << a.device << "\n";
  }
  // The canary goes into memory first, so that no volume exists whose
  // canary memory does not hold; a format that then fails puts the 64
  // bytes back as they were (a refused command changes nothing).
  std::array<uint8_t, kCanaryBytes> saved{};
  const auto& canary = plan->second.canary;
  if (canary) {
    if (Status d = (*region)->check_device(); !d.ok()) return fail(d.error());
    if (Status r = (*region)->copy_from(canary->offset_bytes, saved.data(),
                                        saved.size());
        !r.ok())
      return fail(r.error());
    MemoryGuard guard(plan->first, **region);
    if (Status w = guard.write_canary(*canary); !w.ok()) {
      put_back_canary(**region, canary->offset_bytes, saved);
      return fail(w.error());
    }
  }
  Progress bar("format", 1);
  auto vol = Volume::write_format(std::move(dev).value(), plan->first, plan->second,
                                  [&](uint64_t done, uint64_t total) {
                                    bar.set_total(total);
                                    bar.update(done);
                                  });
  bar.finish();
  if (!vol.ok()) {
    if (canary) put_back_canary(**region, canary->offset_bytes, saved);
    return fail(vol.error());
  }
  std::cout << "formatted " << a.device << ": uuid "
            << vol->superblock().uuid_string() << ", "
            << vol->table().slices.size() << " slices\n";
  return kOk;
}

}  // namespace

void add_format(CLI::App& app, int& rc) {
  auto args = std::make_shared<FormatArgs>();
  CLI::App* c = app.add_subcommand(
      "format", "Create a pcimirror volume on a partition or image file");
  c->add_option("device", args->device, "Block device or image file")->required();
  c->add_option("--memory", args->memory,
                "Memory spec, e.g. file=/dev/shm/ram,size=256M")
      ->required();
  c->add_option("--slice", args->slices,
                "Slice NAME:OFFSET:LENGTH (sizes take K/M/G); repeat")
      ->required();
  c->add_option("--label", args->label, "Volume label (up to 64 bytes)");
  c->add_option("--copies", args->copies,
                "Mirror copies per slice, 1 to 16 (default 2): 1 mirrors in "
                "place, 2 is A/B, N keeps the last N generations "
                "(pcimirror log, restore --generation)");
  // Replaced by --copies; kept hidden so that it fails with a pointer.
  c->add_option("--slots", args->slots)->group("");
  c->add_option("--metadata-size", args->metadata_size,
                "Size of each metadata slot (default 4M)");
  c->add_option("--canary", args->canary,
                "Claim 64 bytes of the region at OFFSET (8-byte aligned, "
                "outside every slice) for a canary that detects reset memory")
      ->type_name("OFFSET");
  c->add_flag("--dry-run", args->dry_run, "Print the layout, write nothing");
  c->add_flag("--force", args->force, "Overwrite an existing volume");
  c->callback([args, &rc] { rc = run(*args); });
}

}  // namespace pcimirror::cli
