#include "fs/volume.h"

#include <sys/random.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "fs/allocator.h"
#include "fs/memory_guard.h"
#include "io/log.h"
#include "io/units.h"

namespace pcimirror {
namespace {

Result<std::vector<uint8_t>> read_bytes(const BlockDevice& dev,
                                        uint64_t offset_bytes,
                                        uint64_t length_bytes) {
  AlignedBuffer buf(length_bytes, kBlockBytes);
  PCIM_TRY(dev.pread_all(buf.data(), buf.size(), offset_bytes));
  auto* p = reinterpret_cast<const uint8_t*>(buf.data());
  return std::vector<uint8_t>(p, p + length_bytes);
}

Status write_bytes(const BlockDevice& dev, uint64_t offset_bytes,
                   std::span<const uint8_t> bytes) {
  AlignedBuffer buf(bytes.size(), kBlockBytes);
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<uint8_t*>(buf.data()));
  return dev.pwrite_all(buf.data(), buf.size(), offset_bytes);
}

// Reads slot `i`: the first block for the header, then the payload it names.
Result<SliceTable> read_slot(const BlockDevice& dev, const Superblock& sb,
                             int i) {
  const uint64_t off = sb.meta_slot_sector[i] * kSectorBytes;
  const uint64_t slot_bytes = sb.meta_slot_sectors * kSectorBytes;
  PCIM_ASSIGN_OR_RETURN(auto head, read_bytes(dev, off, kBlockBytes));
  uint64_t payload = 0;
  for (int b = 0; b < 8; ++b) payload |= uint64_t{head[24 + b]} << (8 * b);
  uint64_t need = kSlotHeaderBytes + std::min(payload, slot_bytes);
  need = (need + kBlockBytes - 1) / kBlockBytes * kBlockBytes;
  need = std::min(need, slot_bytes);
  if (need > kBlockBytes) {
    PCIM_ASSIGN_OR_RETURN(head, read_bytes(dev, off, need));
  }
  return decode_slot(sb, head);
}

}  // namespace

Status check_canary_window(uint64_t offset_bytes, uint64_t region_bytes,
                           const SliceTable& table) {
  const std::string at = "the canary at byte " + std::to_string(offset_bytes);
  if (offset_bytes % kCanaryAlignBytes)
    return make_error(EINVAL, at + " is not a multiple of " +
                                  std::to_string(kCanaryAlignBytes) +
                                  " bytes; give an aligned OFFSET");
  if (offset_bytes > region_bytes || region_bytes - offset_bytes < kCanaryBytes)
    return make_error(EINVAL, at + " (64 bytes) lies beyond the region of " +
                                  std::to_string(region_bytes) + " bytes");
  for (const SliceEntry& s : table.slices)
    if (offset_bytes < s.offset_bytes + s.length_bytes &&
        s.offset_bytes < offset_bytes + kCanaryBytes)
      return make_error(EINVAL, at + " (64 bytes) overlaps slice '" + s.name +
                                    "'; pcimirror owns the canary's bytes, so "
                                    "choose an OFFSET outside every slice");
  return {};
}

Result<std::pair<Superblock, SliceTable>> Volume::plan_format(
    const BlockDevice& device, const FormatRequest& req) {
  PCIM_ASSIGN_OR_RETURN(Superblock sb,
                        plan_layout(device.size_bytes(),
                                    device.logical_block_size(),
                                    req.meta_slot_bytes));
  if (req.memory_spec.size() >= kMemorySpecBytes)
    return make_error(EINVAL, "memory spec is longer than " +
                                  std::to_string(kMemorySpecBytes - 1) +
                                  " bytes");
  if (req.label.size() > kLabelBytes)
    return make_error(EINVAL, "--label is longer than 64 bytes; shorten it");
  if (req.mirror_copies < kMinMirrorCopies ||
      req.mirror_copies > kMaxMirrorCopies)
    return make_error(EINVAL, "--copies " + std::to_string(req.mirror_copies) +
                                  ": give 1 to 16 mirror copies per slice "
                                  "(default 2)");
  if (req.slices.empty())
    return make_error(EINVAL, "give at least one --slice NAME:OFFSET:LENGTH");
  if (getrandom(sb.uuid.data(), sb.uuid.size(), 0) != 16)
    return errno_error("getrandom failed");
  sb.uuid[6] = (sb.uuid[6] & 0x0f) | 0x40;  // RFC 4122 version 4
  sb.uuid[8] = (sb.uuid[8] & 0x3f) | 0x80;
  sb.label = req.label;
  sb.region_bytes = req.region_bytes;
  sb.pci_vendor_id = req.pci_vendor_id;
  sb.pci_device_id = req.pci_device_id;
  sb.pci_bar_bytes = req.pci_bar_bytes;
  sb.memory_spec = req.memory_spec;
  sb.mirror_copies = req.mirror_copies;
  sb.format_time_ns = wall_clock_ns();
  sb.incompat_features = kIncompatSliceIds | kIncompatTableHeader;
  // More than two copies (a history of generations, FORMAT.md §7): releases
  // that keep at most two must refuse the volume.
  if (req.mirror_copies > 2) sb.incompat_features |= kIncompatGenerations;

  SliceTable table;
  table.generation = 1;
  std::vector<std::pair<uint64_t, const SliceSpec*>> windows;
  std::set<std::string> names;
  for (const SliceSpec& s : req.slices) {
    PCIM_TRY(validate_new_name(s.name));
    if (s.length_bytes == 0)
      return make_error(EINVAL, "slice '" + s.name +
                                    "' has length 0; give a LENGTH of at least 1 byte");
    if (s.offset_bytes > req.region_bytes ||
        s.length_bytes > req.region_bytes - s.offset_bytes)
      return make_error(EINVAL, "slice '" + s.name + "' [" +
                                    std::to_string(s.offset_bytes) + ", +" +
                                    std::to_string(s.length_bytes) +
                                    ") lies beyond the region of " +
                                    std::to_string(req.region_bytes) +
                                    " bytes; check OFFSET and LENGTH, or the "
                                    "memory spec's size");
    if (!names.insert(s.name).second)
      return make_error(EINVAL, "slice name '" + s.name +
                                    "' given twice; slice names must be unique");
    windows.emplace_back(s.offset_bytes, &s);
    SliceEntry e;
    e.id = table.slices.size() + 1;  // IDs 1..n in the order given
    e.name = s.name;
    e.offset_bytes = s.offset_bytes;
    e.length_bytes = s.length_bytes;
    e.mode = req.mode;
    e.uid = req.uid;
    e.gid = req.gid;
    e.atime_ns = e.mtime_ns = e.ctime_ns = sb.format_time_ns;
    e.copies.resize(req.mirror_copies);
    table.slices.push_back(std::move(e));
  }
  table.next_slice_id = table.slices.size() + 1;
  if (req.canary_offset_bytes) {
    PCIM_TRY(
        check_canary_window(*req.canary_offset_bytes, req.region_bytes, table));
    PCIM_ASSIGN_OR_RETURN(table.canary, fresh_canary(*req.canary_offset_bytes));
  }
  std::sort(windows.begin(), windows.end());
  for (size_t i = 1; i < windows.size(); ++i) {
    const SliceSpec& a = *windows[i - 1].second;
    const SliceSpec& b = *windows[i].second;
    if (b.offset_bytes < a.offset_bytes + a.length_bytes)
      return make_error(EINVAL, "slices '" + a.name + "' and '" + b.name +
                                    "' overlap in the region; give them "
                                    "disjoint OFFSET:LENGTH windows");
  }
  PCIM_ASSIGN_OR_RETURN(Allocator alloc, Allocator::from_table(sb, table));
  // Copy-major order (docs/FORMAT.md §6): every slice's copy 0, then every
  // slice's copy 1, so slices side by side in the table are side by side on
  // the device and a group sync of small slices gathers into large requests.
  for (uint32_t copy = 0; copy < req.mirror_copies; ++copy) {
    for (SliceEntry& e : table.slices) {
      MirrorCopy& c = e.copies[copy];
      auto got = alloc.allocate(mirror_sectors(e.length_bytes));
      if (!got.ok())
        return make_error(
            ENOSPC, "device " + device.path() + " is too small: the " +
                        std::to_string(req.mirror_copies) +
                        " mirror copies of every slice need more than "
                        "the " +
                        std::to_string(sb.data_sectors * kSectorBytes) +
                        " bytes of its data area (out of room at slice '" +
                        e.name +
                        "'); use a larger device, fewer or "
                        "smaller slices, or fewer --copies");
      c.extents = std::move(got).value();
    }
  }
  PCIM_TRY(check_plan(device, sb, table));
  return std::make_pair(sb, table);
}

Status Volume::check_plan(const BlockDevice& device, const Superblock& sb,
                          const SliceTable& table) {
  // What load() will demand of the volume, checked before anything is
  // written: format --force wipes the old volume only after this passed.
  auto decoded = decode_superblock(encode_superblock(sb));
  if (!decoded.ok())
    return make_error(EINVAL, "planned layout for " + device.path() +
                                  " is invalid (" + decoded.error().message +
                                  "); nothing was written");
  // A valid superblock lies inside device_bytes (§3).
  if (sb.device_bytes > device.size_bytes())
    return make_error(EINVAL, "planned layout for " + device.path() +
                                  " needs " + std::to_string(sb.device_bytes) +
                                  " bytes, the device holds " +
                                  std::to_string(device.size_bytes()) +
                                  "; nothing was written");
  PCIM_TRY(validate_table(sb, table));
  PCIM_TRY(encode_slot(sb, table));
  // The table grows as copies are written: each written copy carries its
  // chunk CRCs (§4.1), so with every copy of every slice written it is
  // largest. A plan must fit its slot then too, or a later sync fails
  // with E2BIG (more copies per slice, --copies, make this likelier).
  SliceTable full = table;
  for (SliceEntry& e : full.slices)
    for (MirrorCopy& c : e.copies)
      c.chunk_crc32c.resize(chunk_count(e.length_bytes, sb.crc_chunk_bytes));
  if (auto enc = encode_slot(sb, full); !enc.ok()) {
    Error err = enc.take_error();
    err.message = "with every mirror copy written, the " + err.message +
                  " (or give fewer --copies); nothing was written";
    return err;
  }
  return {};
}

Result<Volume> Volume::write_format(
    BlockDevice device, Superblock sb, SliceTable table,
    const std::function<void(uint64_t, uint64_t)>& progress) {
  // Nothing is written unless the whole plan is sound.
  PCIM_TRY(check_plan(device, sb, table));
  Volume v(std::move(device));
  v.sb_ = sb;
  PCIM_ASSIGN_OR_RETURN(auto slot_bytes, encode_slot(sb, table));
  const uint64_t total = 6 * uint64_t{kBlockBytes} + slot_bytes.size();
  uint64_t done = 0;
  auto step = [&](uint64_t n) {
    done += n;
    if (progress) progress(done, total);
  };
  // docs/FORMAT.md §7 "format writes". Each step is flushed before the next,
  // so a crash leaves either no volume or a complete one.
  // 1. Invalidate any old volume: both superblocks.
  std::vector<uint8_t> zeros(kBlockBytes, 0);
  PCIM_TRY(write_bytes(v.device_, 0, zeros));
  PCIM_TRY(write_bytes(v.device_, sb.backup_superblock_sector * kSectorBytes, zeros));
  PCIM_TRY(v.device_.flush());
  step(2 * kBlockBytes);
  // 2. Both slot headers, then the table with generation 1 (slot 1).
  for (int i = 0; i < 2; ++i)
    PCIM_TRY(write_bytes(v.device_, sb.meta_slot_sector[i] * kSectorBytes, zeros));
  step(2 * kBlockBytes);
  PCIM_TRY(v.write_slot(table));
  PCIM_TRY(v.device_.flush());
  step(slot_bytes.size());
  // 3. The primary superblock: from here on the device is a volume.
  auto sbytes = encode_superblock(sb);
  PCIM_TRY(write_bytes(v.device_, 0, sbytes));
  PCIM_TRY(v.device_.flush());
  step(kBlockBytes);
  // 4. The backup superblock.
  PCIM_TRY(write_bytes(v.device_, sb.backup_superblock_sector * kSectorBytes, sbytes));
  PCIM_TRY(v.device_.flush());
  step(kBlockBytes);
  v.table_ = std::move(table);
  return v;
}

Status Volume::write_slot(const SliceTable& table) {
  PCIM_ASSIGN_OR_RETURN(auto bytes, encode_slot(sb_, table));
  const int slot = static_cast<int>(table.generation % 2);
  return write_bytes(device_, sb_.meta_slot_sector[slot] * kSectorBytes, bytes);
}

Result<Volume> Volume::load(BlockDevice device) {
  Volume v(std::move(device));
  const BlockDevice& dev = v.device_;
  if (dev.size_bytes() < 2 * kBlockBytes)
    return make_error(EINVAL, "device " + dev.path() +
                                  " is too small to hold a pcimirror volume");
  PCIM_ASSIGN_OR_RETURN(auto primary, read_bytes(dev, 0, kSuperblockBytes));
  auto sb = decode_superblock(primary);
  if (!sb.ok()) {
    uint64_t backup_off = dev.size_bytes() / kBlockBytes * kBlockBytes - kBlockBytes;
    auto backup_bytes = read_bytes(dev, backup_off, kSuperblockBytes);
    Result<Superblock> backup =
        backup_bytes.ok() ? decode_superblock(*backup_bytes)
                          : Result<Superblock>(backup_bytes.error());
    if (!backup.ok()) {
      // Format writes the backup last: without one, any primary is at most
      // an interrupted format's.
      if (backup.error().message.find("bad magic") != std::string::npos)
        return make_error(EINVAL, dev.path() +
                                      " holds no pcimirror volume (or an "
                                      "interrupted format); run 'pcimirror "
                                      "format' first");
      return make_error(EUCLEAN, "both superblocks of " + dev.path() +
                                     " are damaged (primary: " +
                                     sb.error().message + "; backup: " +
                                     backup.error().message + ")");
    }
    v.warnings_.push_back("primary superblock of " + dev.path() +
                          " is damaged (" + sb.error().message +
                          "); using the backup copy");
    sb = std::move(backup);
  }
  v.sb_ = std::move(sb).value();
  const Superblock& s = v.sb_;
  if (s.incompat_features & ~kKnownIncompat)
    return make_error(EINVAL, dev.path() +
                                  " uses incompatible features unknown to "
                                  "this pcimirror; upgrade pcimirror");
  if (s.ro_compat_features & ~kKnownRoCompat) {
    v.read_only_ = true;
    v.warnings_.push_back(dev.path() +
                          " uses features unknown to this pcimirror; "
                          "opening read-only");
  }
  if (dev.size_bytes() < s.device_bytes / kBlockBytes * kBlockBytes)
    return make_error(ENOSPC, "device " + dev.path() + " holds " +
                                  std::to_string(dev.size_bytes()) +
                                  " bytes but was formatted with " +
                                  std::to_string(s.device_bytes) +
                                  "; attach the whole partition");
  if (dev.is_block_device() && dev.logical_block_size() != s.logical_block_size)
    return make_error(EINVAL, "device " + dev.path() +
                                  " has logical block size " +
                                  std::to_string(dev.logical_block_size()) +
                                  " but was formatted with " +
                                  std::to_string(s.logical_block_size));
  Result<SliceTable> slots[2] = {read_slot(dev, s, 0), read_slot(dev, s, 1)};
  int best = -1;
  for (int i = 0; i < 2; ++i) {
    if (!slots[i].ok()) continue;
    if (slots[i]->generation % 2 != static_cast<uint64_t>(i)) {
      slots[i] = make_error(EUCLEAN, "generation in the wrong slot");
      continue;
    }
    if (best < 0 || slots[i]->generation > slots[best]->generation) best = i;
  }
  if (best < 0)
    return make_error(EUCLEAN, "both metadata slots of " + dev.path() +
                                   " are damaged (slot 0: " +
                                   slots[0].error().message + "; slot 1: " +
                                   slots[1].error().message +
                                   "); run 'pcimirror fsck'");
  int other = 1 - best;
  if (!slots[other].ok() && slots[best]->generation > 1)
    v.warnings_.push_back("metadata slot " + std::to_string(other) + " of " +
                          dev.path() + " is damaged (" +
                          slots[other].error().message + "); using slot " +
                          std::to_string(best) + ", generation " +
                          std::to_string(slots[best]->generation));
  v.table_ = std::move(slots[best]).value();
  if (slots[other].ok()) v.previous_ = std::move(slots[other]).value();
  return v;
}

void Volume::release_after(Error& err) {
  switch (err.code) {
    case EIO:
    case ENXIO:
    case ENODEV:
    case ESHUTDOWN:
    case ENOTCONN:
    case ECONNRESET:
    case EPIPE:
    case ETIMEDOUT:
      break;
    default:
      return;
  }
  if (!device_.is_open() || !device_.is_block_device()) return;
  release_device();
  err.message = err.what() + " (pcimirror closed " + device_.path() +
                " so that it can be reconnected or replaced, and reopens it "
                "at the next sync)";
  err.from_kernel = false;
  log_warning("closed the failed mirror device " + device_.path() +
              " until the next sync; device memory is still served");
}

Status Volume::reopen_device() {
  if (device_.is_open()) return {};
  const std::string path = device_.path();
  const std::string why =
      "; nothing was committed and the previous mirrors "
      "are kept. Reconnect the device (nbd-client, the "
      "storage path) and sync again";
  BlockDevice::OpenOptions shared;
  shared.read_only = true;
  shared.exclusive = false;
  auto probe = BlockDevice::open(path, shared);
  if (!probe.ok())
    return make_error(probe.error().code,
                      "the mirror device " + path +
                          " is not back: " + probe.error().what() + why);
  auto there = Volume::load(std::move(probe).value());
  if (!there.ok())
    return make_error(EIO, "the mirror device " + path +
                               " does not read back as the volume: " +
                               there.error().what() + why);
  if (there->superblock().uuid != sb_.uuid ||
      there->table().generation != table_.generation)
    return make_error(
        ESTALE,
        "the mirror device " + path + " now holds " +
            (there->superblock().uuid != sb_.uuid
                 ? "another volume (" + there->superblock().uuid_string() + ")"
                 : "metadata generation " +
                       std::to_string(there->table().generation) + ", not " +
                       std::to_string(table_.generation) +
                       ": something else wrote to it meanwhile") +
            "; unmount and check it (pcimirror fsck " + path + ")");
  BlockDevice::OpenOptions own;
  own.read_only = device_.read_only();
  own.exclusive = true;
  auto dev = BlockDevice::open(path, own);
  if (!dev.ok())
    return make_error(dev.error().code, "reopening the mirror device " + path +
                                            " failed: " + dev.error().what() +
                                            why);
  dev->set_observer(device_.observer());
  device_ = std::move(dev).value();
  log_info("reopened the mirror device " + path + " (metadata generation " +
           std::to_string(table_.generation) + ")");
  return {};
}

Status Volume::commit(SliceTable next) {
  if (read_only_ || device_.read_only())
    return make_error(EROFS, "volume on " + device_.path() + " is read-only");
  if (table_.generation == UINT64_MAX)
    return make_error(EUCLEAN, "metadata generation of " + device_.path() +
                                   " is at its maximum; run 'pcimirror fsck'");
  PCIM_TRY(reopen_device());
  next.generation = table_.generation + 1;
  next.slot_version = kSlotVersionCurrent;
  if (next.next_slice_id < table_.next_slice_id)
    return make_error(EINVAL, "commit would give out slice IDs again");
  PCIM_TRY(validate_table(sb_, next));
  Status written = write_slot(next);
  if (written.ok()) written = device_.flush();
  if (!written.ok()) {
    Error err = written.take_error();
    release_after(err);
    return err;
  }
  previous_ = std::move(table_);
  table_ = std::move(next);
  return {};
}

bool Volume::needs_upgrade() const {
  return table_.slot_version != kSlotVersionCurrent;
}

Result<bool> Volume::upgrade() {
  if (!needs_upgrade()) return false;
  const uint32_t from = table_.slot_version;
  PCIM_TRY(commit(table_));
  log_info("upgraded the volume on " + device_.path() + " to " +
           (from < kSlotVersionIds ? "stable slice IDs and " : "") +
           "the canary record (metadata slot version " + std::to_string(from) +
           " to " + std::to_string(kSlotVersionCurrent) +
           ", docs/FORMAT.md §9)");
  return true;
}

Result<Allocator> Volume::allocator() const {
  PCIM_ASSIGN_OR_RETURN(Allocator a, Allocator::from_table(sb_, table_));
  if (previous_)
    for (const SliceEntry& s : previous_->slices)
      for (const MirrorCopy& c : s.copies) a.reserve(c.extents);
  return a;
}

}  // namespace pcimirror
