#include "fs/fsck.h"

#include "fs/allocator.h"
#include "fs/format.h"
#include "fs/volume.h"
#include "io/uring_engine.h"

namespace pcimirror {
namespace {

using F = FsckFinding;

Result<std::vector<uint8_t>> read_block(const BlockDevice& dev, uint64_t off) {
  AlignedBuffer buf(kSuperblockBytes, kBlockBytes);
  PCIM_TRY(dev.pread_all(buf.data(), buf.size(), off));
  auto* p = reinterpret_cast<const uint8_t*>(buf.data());
  return std::vector<uint8_t>(p, p + kSuperblockBytes);
}

Status write_block(const BlockDevice& dev, uint64_t off,
                   const std::vector<uint8_t>& bytes) {
  AlignedBuffer buf(bytes.size(), kBlockBytes);
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<uint8_t*>(buf.data()));
  PCIM_TRY(dev.pwrite_all(buf.data(), buf.size(), off));
  return dev.flush();
}

}  // namespace

int FsckReport::exit_code() const {
  bool repaired = false;
  for (const auto& f : findings) {
    if (f.severity == F::kError && !f.repaired) return 4;
    repaired |= f.repaired;
  }
  return repaired ? 1 : 0;
}

Result<FsckReport> run_fsck(BlockDevice device, const FsckOptions& opt) {
  FsckReport rep;
  auto add = [&](F::Severity s, std::string m, bool repaired = false) {
    rep.findings.push_back({s, std::move(m), repaired});
  };
  if (opt.repair && device.read_only())
    return make_error(EROFS, "fsck --repair needs " + device.path() + " writable");
  const std::string path = device.path();

  // 1. Superblocks (§3, §8).
  const uint64_t backup_off =
      device.size_bytes() / kBlockBytes * kBlockBytes - kBlockBytes;
  PCIM_ASSIGN_OR_RETURN(auto pbytes, read_block(device, 0));
  PCIM_ASSIGN_OR_RETURN(auto bbytes, read_block(device, backup_off));
  auto primary = decode_superblock(pbytes);
  auto backup = decode_superblock(bbytes);
  if (!primary.ok() && !backup.ok()) {
    if (backup.error().message.find("bad magic") != std::string::npos)
      return make_error(EINVAL, path + " holds no pcimirror volume (or an "
                                       "interrupted format)");
    add(F::kError, "both superblocks are damaged (primary: " +
                       primary.error().message + "; backup: " +
                       backup.error().message + ")");
    return rep;
  }
  const Superblock sb = primary.ok() ? *primary : *backup;
  const auto good = encode_superblock(sb);
  if (!primary.ok() || !backup.ok() || pbytes != bbytes) {
    const bool fix_primary = !primary.ok();
    std::string what = fix_primary
                           ? "primary superblock is damaged (" + primary.error().message + ")"
                       : !backup.ok()
                           ? "backup superblock is damaged (" + backup.error().message + ")"
                           : "backup superblock differs from the primary";
    bool repaired = false;
    if (opt.repair) {
      PCIM_TRY(write_block(device, fix_primary ? 0 : backup_off, good));
      repaired = true;
      what += "; rewrote it from the " + std::string(fix_primary ? "backup" : "primary");
    }
    // The primary is what mount trusts: its damage is an error. A bad
    // backup next to a good primary is what an interrupted format's last
    // step leaves, and harmless until the primary fails too: a warning.
    add(fix_primary ? F::kError : F::kWarning, what, repaired);
  }

  // 2. Metadata slots (§4).
  std::string slot_state[2];
  bool slot_ok[2] = {false, false};
  {
    // Decode each slot on its own to report both.
    for (int i = 0; i < 2; ++i) {
      const uint64_t off = sb.meta_slot_sector[i] * kSectorBytes;
      AlignedBuffer buf(sb.meta_slot_sectors * kSectorBytes, kBlockBytes);
      PCIM_TRY(device.pread_all(buf.data(), buf.size(), off));
      auto* p = reinterpret_cast<const uint8_t*>(buf.data());
      auto t = decode_slot(sb, std::span<const uint8_t>(p, buf.size()));
      slot_ok[i] = t.ok() && t->generation % 2 == static_cast<uint64_t>(i);
      slot_state[i] = t.ok() ? "generation " + std::to_string(t->generation)
                             : t.error().message;
    }
  }
  auto vol = Volume::load(std::move(device));
  if (!vol.ok()) {
    add(F::kError, vol.error().message);
    return rep;
  }
  rep.generation = vol->table().generation;
  rep.slices = vol->table().slices.size();
  // Every commit writes the current slot version, so a repair of an older
  // volume upgrades it (docs/FORMAT.md §9); said once, at the end.
  const bool before_ids = vol->needs_upgrade();
  const int current = static_cast<int>(rep.generation % 2);
  if (!slot_ok[1 - current] && rep.generation > 1) {
    std::string what = "metadata slot " + std::to_string(1 - current) +
                       " holds no valid table (" + slot_state[1 - current] +
                       "): an interrupted commit or damage; slot " +
                       std::to_string(current) + " (generation " +
                       std::to_string(rep.generation) + ") is current";
    if (opt.repair) {
      PCIM_TRY(vol->commit(vol->table()));
      add(F::kWarning, what + "; rewrote it with generation " +
                           std::to_string(vol->table().generation), true);
      rep.generation = vol->table().generation;
    } else {
      add(F::kWarning, what);
    }
  }

  // 3. Invariants (§6): decode_slot checked them; the derived allocation
  //    map must build too.
  auto alloc = Allocator::from_table(vol->superblock(), vol->table());
  if (!alloc.ok()) add(F::kError, "allocation map: " + alloc.error().message);

  // 4. Mirrors: every written copy of every slice is read and checked. A
  //    copy that the device fails to read (EIO, a medium error) or that
  //    fails a CRC is damaged: each is reported with its errno, copy and
  //    bytes, and the run goes on. A failure that is not the copy's (the
  //    io_uring machinery) ends the run with its errno.
  if (opt.verify) {
    PCIM_ASSIGN_OR_RETURN(auto engine, UringEngine::create(vol->device(), opt.engine));
    SliceTable next = vol->table();
    bool changed = false;
    uint64_t total = 0, base = 0;
    for (const SliceEntry& e : next.slices) {
      if (!e.committed()) continue;
      for (const MirrorCopy& c : e.copies)
        if (c.generation) total += e.length_bytes;
    }
    auto tick = [&](uint64_t d) {
      if (opt.progress) opt.progress(base + d, total);
    };
    // A copy marked unwritten (generation 0) keeps its extents: the next
    // sync of the slice writes it (FORMAT.md §7 step 1).
    auto mark_unwritten = [](MirrorCopy& c) {
      c = MirrorCopy{0, 0, 0, 0, MirrorPath::kNone, std::move(c.extents), {}};
    };
    for (SliceEntry& e : next.slices) {
      if (!e.committed()) continue;
      // Checks copy i: nullopt when intact, else its damage.
      auto check = [&](uint32_t i) -> Result<std::optional<CopyDamage>> {
        CopyDamage d;
        Status v =
            verify_mirror(*engine, vol->superblock(), e, e.copies[i], tick, &d);
        base += e.length_bytes;
        if (v.ok()) return std::optional<CopyDamage>();
        d.copy = i;
        if (!d.is_damage()) {
          Error err = v.take_error();
          err.message = "verify of slice '" + e.name + "' copy " +
                        std::to_string(i) + " failed: " + err.message;
          return err;
        }
        return std::optional<CopyDamage>(std::move(d));
      };
      // The current copy, then every older written copy, newest first
      // (any number of copies, docs/FORMAT.md §8).
      const uint32_t cur_i = e.current_copy;
      const uint64_t cur_gen = e.copies[cur_i].generation;
      const uint32_t next_i = e.next_copy();
      PCIM_ASSIGN_OR_RETURN(auto cur_damage, check(cur_i));
      if (!cur_damage) rep.verified_bytes += e.length_bytes;
      std::vector<std::pair<uint32_t, std::optional<CopyDamage>>> others;
      std::optional<uint32_t> newest_intact;  // of the older copies
      for (uint32_t i : e.copies_by_generation()) {
        if (i == cur_i) continue;
        PCIM_ASSIGN_OR_RETURN(auto dmg, check(i));
        if (!dmg && !newest_intact && e.copies[i].generation < cur_gen)
          newest_intact = i;
        others.emplace_back(i, std::move(dmg));
      }
      // After the repair some copy restores: the current one or the one
      // that becomes current.
      const bool some_intact = !cur_damage || newest_intact.has_value();
      const char* older = e.copies.size() == 2 ? "previous" : "older";
      auto finding = [&](F::Severity sev, std::string m, bool repaired,
                         const CopyDamage& d) {
        rep.findings.push_back({sev, std::move(m), repaired, e.name, d});
      };
      for (auto& [other_i, other_damage] : others) {
        if (!other_damage) continue;
        const CopyDamage& d = *other_damage;
        std::string what = "slice '" + e.name + "': " + older +
                           " copy (generation " + std::to_string(d.generation) +
                           ") " + d.state() + " (copy " +
                           std::to_string(d.copy) + ": " + d.detail() + ")";
        // A repair that replaces the current copy marks it unwritten, and
        // the next sync writes that one (FORMAT.md §7 step 1): the copy
        // an interrupted sync left is then no longer the next one written,
        // and is marked unwritten too.
        const bool current_replaced = cur_damage && newest_intact && opt.repair;
        if (!d.unreadable && other_i == next_i && !current_replaced) {
          // What an interrupted sync (or write-behind) leaves in the copy
          // the next sync writes: not damage.
          finding(F::kInfo,
                  what + ": overwritten by an interrupted sync; not used",
                  false, d);
        } else if (some_intact && opt.repair) {
          mark_unwritten(e.copies[other_i]);
          changed = true;
          finding(F::kError,
                  what + "; marked copy " + std::to_string(other_i) +
                      " unwritten: restore no longer falls back to it, and "
                      "a later sync of the slice rewrites it",
                  true, d);
        } else {
          finding(F::kError,
                  what + ": restore cannot fall back to it" +
                      (some_intact ? "; --repair marks it unwritten so that "
                                     "a later sync rewrites it"
                                   : std::string()),
                  false, d);
        }
      }
      if (!cur_damage) continue;
      const CopyDamage& d = *cur_damage;
      std::string what = "slice '" + e.name + "': current mirror (generation " +
                         std::to_string(cur_gen) + ") " + d.state() +
                         " (copy " + std::to_string(cur_i) + ": " + d.detail() +
                         ")";
      if (newest_intact && opt.repair) {
        const uint32_t other_i = *newest_intact;
        mark_unwritten(e.copies[cur_i]);
        e.current_copy = other_i;
        changed = true;
        finding(F::kError,
                what + "; made the " + older + " copy (generation " +
                    std::to_string(e.copies[other_i].generation) +
                    ") current; the next sync of the slice rewrites copy " +
                    std::to_string(cur_i),
                true, d);
      } else if (newest_intact) {
        finding(F::kError,
                what + "; the " + older + " copy (generation " +
                    std::to_string(e.copies[*newest_intact].generation) +
                    ") is intact: restore falls back to it, --repair makes it "
                    "current",
                false, d);
      } else {
        finding(F::kError, what + " and no intact " + older + " copy exists",
                false, d);
      }
    }
    if (changed) {
      PCIM_TRY(vol->commit(std::move(next)));
      rep.generation = vol->table().generation;
    }
  }
  if (before_ids && !vol->needs_upgrade())
    add(F::kInfo,
        "the repair commit upgraded the volume to the current metadata "
        "format (metadata slot version 3: stable slice IDs and the canary "
        "record, docs/FORMAT.md §9)",
        true);
  return rep;
}

}  // namespace pcimirror
