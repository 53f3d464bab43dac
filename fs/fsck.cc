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

  // 4. Mirrors.
  if (opt.verify) {
    PCIM_ASSIGN_OR_RETURN(auto engine, UringEngine::create(vol->device(), opt.engine));
    SliceTable next = vol->table();
    bool changed = false;
    uint64_t total = 0, base = 0;
    for (const SliceEntry& e : next.slices) {
      if (!e.committed()) continue;
      total += e.length_bytes;
      if (e.copies.size() == 2 && e.copies[1 - e.current_copy].generation) total += e.length_bytes;
    }
    auto tick = [&](uint64_t d) {
      if (opt.progress) opt.progress(base + d, total);
    };
    for (SliceEntry& e : next.slices) {
      const MirrorCopy* cur = e.committed();
      if (!cur) continue;
      Status v = verify_mirror(*engine, vol->superblock(), e, *cur, tick);
      base += e.length_bytes;
      if (v.ok()) rep.verified_bytes += e.length_bytes;
      const uint32_t other_i = 1 - e.current_copy;
      const bool has_other = e.copies.size() == 2 && e.copies[other_i].generation != 0;
      bool other_ok = false;
      if (has_other) {
        Status ov = verify_mirror(*engine, vol->superblock(), e, e.copies[other_i], tick);
        base += e.length_bytes;
        other_ok = ov.ok();
        if (!other_ok && v.ok())
          add(F::kInfo, "slice '" + e.name + "': previous copy (generation " +
                            std::to_string(e.copies[other_i].generation) +
                            ") no longer verifies (" + ov.error().message +
                            "): overwritten by an interrupted sync; not used");
      }
      if (v.ok()) continue;
      if (v.error().code != EUCLEAN) return v.take_error();
      std::string what = "slice '" + e.name + "': current mirror (generation " +
                         std::to_string(cur->generation) + ") is damaged (" +
                         v.error().message + ")";
      if (other_ok && opt.repair) {
        e.copies[e.current_copy] = MirrorCopy{0, 0, 0, 0, MirrorPath::kNone,
                                              e.copies[e.current_copy].extents, {}};
        e.current_copy = other_i;
        changed = true;
        add(F::kError, what + "; made the previous copy (generation " +
                           std::to_string(e.copies[other_i].generation) +
                           ") current", true);
      } else if (other_ok) {
        add(F::kError, what + "; the previous copy (generation " +
                           std::to_string(e.copies[other_i].generation) +
                           ") is intact: restore falls back to it, --repair makes it current");
      } else {
        add(F::kError, what + " and no intact previous copy exists");
      }
    }
    if (changed) PCIM_TRY(vol->commit(std::move(next)));
  }
  return rep;
}

}  // namespace pcimirror
