#include "fs/format.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>

#include "fs/crc32c.h"

namespace pcimirror {
namespace {

constexpr char kSuperMagic[8] = {'P', 'C', 'I', 'M', 'I', 'R', 'S', 'B'};
constexpr char kSlotMagic[8] = {'P', 'C', 'I', 'M', 'I', 'R', 'M', 'D'};
constexpr size_t kSuperCrcOffset = 4092;
constexpr size_t kSlotHeaderCrcOffset = 60;
// Fixed part of a slice entry before its name (§4.1), per slot version.
constexpr size_t kEntryFixedBytesV1 = 72, kEntryFixedBytesV2 = 80;
[[maybe_unused]] constexpr size_t kCopyFixedBytes = 40;

// Little-endian encoder appending to a byte vector.
class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { le(v, 2); }
  void u32(uint32_t v) { le(v, 4); }
  void u64(uint64_t v) { le(v, 8); }
  void i64(int64_t v) { le(static_cast<uint64_t>(v), 8); }
  void bytes(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  void fixed_string(const std::string& s, size_t width) {
    size_t n = std::min(s.size(), width);
    bytes(s.data(), n);
    zeros(width - n);
  }
  void zeros(size_t n) { out_.insert(out_.end(), n, 0); }
  void pad_to(size_t multiple) {
    while (out_.size() % multiple) out_.push_back(0);
  }
  size_t size() const { return out_.size(); }
  void put_u32_at(size_t off, uint32_t v) {
    for (int i = 0; i < 4; ++i) out_[off + i] = static_cast<uint8_t>(v >> (8 * i));
  }

 private:
  void le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t>& out_;
};

// Little-endian decoder; every read is bounds-checked and sets ok() false
// on overrun instead of reading past the span.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool ok() const { return ok_; }
  size_t pos() const { return pos_; }
  size_t remaining() const { return in_.size() - pos_; }
  uint16_t u16() { return static_cast<uint16_t>(le(2)); }
  uint32_t u32() { return static_cast<uint32_t>(le(4)); }
  uint64_t u64() { return le(8); }
  int64_t i64() { return static_cast<int64_t>(le(8)); }
  std::span<const uint8_t> bytes(size_t n) {
    if (!take(n)) return {};
    return in_.subspan(pos_ - n, n);
  }
  std::string fixed_string(size_t width) {
    auto b = bytes(width);
    size_t n = 0;
    while (n < b.size() && b[n]) ++n;
    return std::string(reinterpret_cast<const char*>(b.data()), n);
  }
  void skip(size_t n) { take(n); }

 private:
  bool take(size_t n) {
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }
  uint64_t le(int n) {
    if (!take(static_cast<size_t>(n))) return 0;
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t{in_[pos_ - n + i]} << (8 * i);
    return v;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

Error corrupt(std::string what) { return make_error(EUCLEAN, std::move(what)); }

}  // namespace

const char* to_string(MirrorPath p) {
  switch (p) {
    case MirrorPath::kNone: return "none";
    case MirrorPath::kZeroCopy: return "zero-copy";
    case MirrorPath::kBounce: return "bounce";
    case MirrorPath::kMixed: return "mixed";
    case MirrorPath::kDma:
      return "dma";
  }
  return "unknown";
}

uint64_t SliceEntry::generation() const {
  uint64_t g = 0;
  for (const auto& c : copies) g = std::max(g, c.generation);
  return g;
}

const MirrorCopy* SliceEntry::committed() const {
  if (current_copy >= copies.size() || copies[current_copy].generation == 0)
    return nullptr;
  return &copies[current_copy];
}

uint32_t SliceEntry::next_copy() const {
  if (copies.size() < 2) return 0;
  if (!committed()) return current_copy;
  // §7 step 1: the oldest copy, never the committed mirror. An unwritten
  // copy is older than any written one (lowest index first), then the
  // lowest generation. With two copies this is always the other one.
  uint32_t best = current_copy;
  for (uint32_t i = 0; i < copies.size(); ++i) {
    if (i == current_copy) continue;
    if (best == current_copy || copies[i].generation < copies[best].generation)
      best = i;
  }
  return best;
}

std::vector<uint32_t> SliceEntry::copies_by_generation() const {
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < copies.size(); ++i)
    if (copies[i].generation != 0) out.push_back(i);
  std::stable_sort(out.begin(), out.end(), [&](uint32_t a, uint32_t b) {
    return copies[a].generation > copies[b].generation;
  });
  return out;
}

const SliceEntry* SliceTable::find_id(uint64_t id) const {
  for (const SliceEntry& e : slices)
    if (e.id == id) return &e;
  return nullptr;
}

SliceEntry* SliceTable::find_id(uint64_t id) {
  for (SliceEntry& e : slices)
    if (e.id == id) return &e;
  return nullptr;
}

const SliceEntry* SliceTable::find_name(const std::string& name) const {
  for (const SliceEntry& e : slices)
    if (e.name == name) return &e;
  return nullptr;
}

std::string Superblock::uuid_string() const {
  char buf[40];
  std::snprintf(buf, sizeof buf,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                uuid[0], uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6],
                uuid[7], uuid[8], uuid[9], uuid[10], uuid[11], uuid[12],
                uuid[13], uuid[14], uuid[15]);
  return buf;
}

Result<Superblock> plan_layout(uint64_t device_bytes,
                               uint32_t logical_block_size,
                               uint64_t meta_slot_bytes) {
  // Every sum below is checked before it is formed: a huge --metadata-size
  // used to wrap slot 1 and the data area around 2^64 into a "valid" plan.
  const std::string given =
      "--metadata-size " + std::to_string(meta_slot_bytes);
  if (meta_slot_bytes < kBlockBytes * 4 || meta_slot_bytes % kBlockBytes)
    return make_error(EINVAL, given +
                                  ": the metadata slot size must be a multiple "
                                  "of 4096 and at least 16 KiB (default 4M)");
  Superblock sb;
  sb.logical_block_size = logical_block_size;
  sb.device_bytes = device_bytes;
  uint64_t usable = device_bytes / kBlockBytes * kBlockBytes;
  if (usable < kSuperblockBytes)
    return make_error(ENOSPC, "device is smaller than one superblock");
  if (meta_slot_bytes > usable)
    return make_error(EINVAL, given +
                                  ": one metadata slot would be larger "
                                  "than the whole device of " +
                                  std::to_string(device_bytes) +
                                  " bytes; give a smaller --metadata-size "
                                  "(default 4M)");
  const uint64_t backup = usable - kSuperblockBytes;
  const uint64_t slot0 = kLayoutAlignBytes;
  // Both slots end before the backup superblock: slot0 + 2 * meta <= backup,
  // tested as meta <= (backup - slot0) / 2 so that nothing wraps.
  const uint64_t room = backup > slot0 ? backup - slot0 : 0;
  const std::string no_room =
      "device of " + std::to_string(device_bytes) +
      " bytes has no room for a data area after the metadata (two slots of " +
      std::to_string(meta_slot_bytes) + " bytes from 1 MiB on, " + given +
      "); use a larger device or a smaller --metadata-size";
  if (meta_slot_bytes > room / 2) return make_error(ENOSPC, no_room);
  const uint64_t slot1 = slot0 + meta_slot_bytes;
  const uint64_t meta_end = slot1 + meta_slot_bytes;  // <= backup
  if (meta_end > UINT64_MAX - (kLayoutAlignBytes - 1))
    return make_error(ENOSPC, no_room);
  const uint64_t data = round_up(meta_end, kLayoutAlignBytes);
  if (data > backup || backup - data < kBlockBytes)
    return make_error(ENOSPC, no_room);
  sb.meta_slot_sector = {slot0 / kSectorBytes, slot1 / kSectorBytes};
  sb.meta_slot_sectors = meta_slot_bytes / kSectorBytes;
  sb.data_start_sector = data / kSectorBytes;
  sb.data_sectors = (backup - data) / kSectorBytes;
  sb.backup_superblock_sector = backup / kSectorBytes;
  return sb;
}

std::vector<uint8_t> encode_superblock(const Superblock& sb) {
  std::vector<uint8_t> out;
  out.reserve(kSuperblockBytes);
  Writer w(out);
  w.bytes(kSuperMagic, 8);
  w.u32(sb.version);
  w.u32(kSuperblockBytes);
  w.u64(sb.incompat_features);
  w.u64(sb.ro_compat_features);
  w.u64(sb.compat_features);
  w.bytes(sb.uuid.data(), 16);
  w.fixed_string(sb.label, kLabelBytes);
  w.u32(sb.logical_block_size);
  w.u32(sb.block_bytes);
  w.u64(sb.device_bytes);
  w.u64(sb.meta_slot_sector[0]);
  w.u64(sb.meta_slot_sector[1]);
  w.u64(sb.meta_slot_sectors);
  w.u64(sb.data_start_sector);
  w.u64(sb.data_sectors);
  w.u64(sb.backup_superblock_sector);
  w.u64(sb.region_bytes);
  w.u16(sb.pci_vendor_id);
  w.u16(sb.pci_device_id);
  w.u32(sb.crc_chunk_bytes);
  w.i64(sb.format_time_ns);
  w.u32(sb.mirror_copies);
  w.u32(0);
  w.fixed_string(sb.memory_spec, kMemorySpecBytes);
  w.u64(sb.pci_bar_bytes);
  w.zeros(kSuperblockBytes - w.size());
  w.put_u32_at(kSuperCrcOffset, crc32c(out.data(), kSuperCrcOffset));
  return out;
}

Result<Superblock> decode_superblock(std::span<const uint8_t> bytes) {
  if (bytes.size() < kSuperblockBytes)
    return make_error(EINVAL, "superblock buffer too short");
  if (std::memcmp(bytes.data(), kSuperMagic, 8) != 0)
    return make_error(EINVAL, "no pcimirror superblock (bad magic)");
  Reader r(bytes.first(kSuperblockBytes));
  r.skip(8);
  Superblock sb;
  sb.version = r.u32();
  uint32_t sb_bytes = r.u32();
  if (sb.version != kFormatVersion)
    return make_error(EINVAL, "superblock has format version " +
                                  std::to_string(sb.version) +
                                  "; this pcimirror reads version 1");
  if (sb_bytes != kSuperblockBytes)
    return corrupt("superblock size field is " + std::to_string(sb_bytes));
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i)
    stored |= uint32_t{bytes[kSuperCrcOffset + i]} << (8 * i);
  if (stored != crc32c(bytes.data(), kSuperCrcOffset))
    return corrupt("superblock CRC32C mismatch");
  sb.incompat_features = r.u64();
  sb.ro_compat_features = r.u64();
  sb.compat_features = r.u64();
  auto uuid = r.bytes(16);
  std::copy(uuid.begin(), uuid.end(), sb.uuid.begin());
  sb.label = r.fixed_string(kLabelBytes);
  sb.logical_block_size = r.u32();
  sb.block_bytes = r.u32();
  sb.device_bytes = r.u64();
  sb.meta_slot_sector[0] = r.u64();
  sb.meta_slot_sector[1] = r.u64();
  sb.meta_slot_sectors = r.u64();
  sb.data_start_sector = r.u64();
  sb.data_sectors = r.u64();
  sb.backup_superblock_sector = r.u64();
  sb.region_bytes = r.u64();
  sb.pci_vendor_id = r.u16();
  sb.pci_device_id = r.u16();
  sb.crc_chunk_bytes = r.u32();
  sb.format_time_ns = r.i64();
  sb.mirror_copies = r.u32();
  r.u32();
  sb.memory_spec = r.fixed_string(kMemorySpecBytes);
  sb.pci_bar_bytes = r.u64();
  if (!r.ok()) return corrupt("superblock truncated");

  // Layout consistency (§3 "valid").
  const uint64_t spb = kBlockBytes / kSectorBytes;
  const uint64_t dev_sectors = sb.device_bytes / kSectorBytes;
  auto inside = [&](uint64_t start, uint64_t len) {
    return start % spb == 0 && len % spb == 0 && start <= dev_sectors &&
           len <= dev_sectors - start;
  };
  if (sb.block_bytes != kBlockBytes)
    return corrupt("superblock block_bytes is " + std::to_string(sb.block_bytes));
  if (sb.logical_block_size < 512 || sb.logical_block_size > kBlockBytes ||
      (sb.logical_block_size & (sb.logical_block_size - 1)))
    return corrupt("superblock logical_block_size is " +
                   std::to_string(sb.logical_block_size));
  if (sb.crc_chunk_bytes < kBlockBytes || sb.crc_chunk_bytes % kBlockBytes)
    return corrupt("superblock crc_chunk_bytes is " +
                   std::to_string(sb.crc_chunk_bytes));
  if (sb.mirror_copies < kMinMirrorCopies ||
      sb.mirror_copies > kMaxMirrorCopies)
    return corrupt("superblock mirror_copies is " +
                   std::to_string(sb.mirror_copies) + ", outside 1 to 16");
  if (sb.meta_slot_sectors < 32 ||
      !inside(sb.meta_slot_sector[0], sb.meta_slot_sectors) ||
      !inside(sb.meta_slot_sector[1], sb.meta_slot_sectors) ||
      !inside(sb.data_start_sector, sb.data_sectors) || sb.data_sectors == 0 ||
      !inside(sb.backup_superblock_sector, spb))
    return corrupt("superblock layout lies outside the device");
  const uint64_t s0 = sb.meta_slot_sector[0], s1 = sb.meta_slot_sector[1];
  const uint64_t m = sb.meta_slot_sectors;
  if (s0 < spb || s1 < s0 + m || sb.data_start_sector < s1 + m ||
      sb.backup_superblock_sector < sb.data_end_sector())
    return corrupt("superblock areas overlap");
  return sb;
}

Result<std::vector<uint8_t>> encode_slot(const Superblock& sb,
                                         const SliceTable& table) {
  std::vector<uint8_t> out;
  Writer w(out);
  w.zeros(kSlotHeaderBytes);
  // Table header (§4, slot version 3): 64 bytes.
  w.u64(table.next_slice_id);
  w.u64(table.canary ? table.canary->offset_bytes : 0);
  w.u32(table.canary ? kCanaryBytes : 0);
  w.u32((table.mounted ? kTableFlagMounted : 0u) |
        (table.last_shutdown_dirty ? kTableFlagLastShutdownDirty : 0u));
  if (table.canary)
    w.bytes(table.canary->nonce.data(), table.canary->nonce.size());
  else
    w.zeros(16);
  w.u64(table.dirty_shutdowns);
  w.i64(table.last_dirty_shutdown_ns);
  w.zeros(kTableHeaderBytes - 56);
  for (const SliceEntry& e : table.slices) {
    size_t start = w.size();
    w.u32(0);  // entry_bytes, filled below
    w.u16(static_cast<uint16_t>(e.name.size()));
    w.u16(e.flags);
    w.u32(e.mode);
    w.u32(e.uid);
    w.u32(e.gid);
    w.u32(static_cast<uint32_t>(e.copies.size()));
    w.u64(e.offset_bytes);
    w.u64(e.length_bytes);
    w.i64(e.atime_ns);
    w.i64(e.mtime_ns);
    w.i64(e.ctime_ns);
    w.u32(e.current_copy);
    w.u32(0);
    w.u64(e.id);
    w.bytes(e.name.data(), e.name.size());
    w.pad_to(8);
    for (const MirrorCopy& c : e.copies) {
      w.u64(c.generation);
      w.i64(c.sync_time_ns);
      w.u64(c.sync_duration_ns);
      w.u32(c.crc32c);
      w.u32(static_cast<uint32_t>(c.path));
      w.u32(static_cast<uint32_t>(c.extents.size()));
      w.u32(static_cast<uint32_t>(c.chunk_crc32c.size()));
      for (const Extent& x : c.extents) {
        w.u64(x.start_sector);
        w.u64(x.sectors);
      }
      for (uint32_t crc : c.chunk_crc32c) w.u32(crc);
      w.pad_to(8);
    }
    w.put_u32_at(start, static_cast<uint32_t>(w.size() - start));
  }
  const uint64_t payload = out.size() - kSlotHeaderBytes;
  const uint64_t slot_bytes = sb.meta_slot_sectors * kSectorBytes;
  if (out.size() > slot_bytes)
    return make_error(E2BIG, "slice table needs " + std::to_string(out.size()) +
                                 " bytes, metadata slot holds " +
                                 std::to_string(slot_bytes) +
                                 "; reformat with a larger --metadata-size");
  std::vector<uint8_t> header;
  Writer h(header);
  h.bytes(kSlotMagic, 8);
  h.u32(kSlotVersionCurrent);
  h.u32(kSlotHeaderBytes);
  h.u64(table.generation);
  h.u64(payload);
  h.u32(static_cast<uint32_t>(table.slices.size()));
  h.u32(crc32c(out.data() + kSlotHeaderBytes, payload));
  h.bytes(sb.uuid.data(), 16);
  h.u32(0);
  h.u32(crc32c(header.data(), kSlotHeaderCrcOffset));
  std::copy(header.begin(), header.end(), out.begin());
  w.pad_to(kBlockBytes);
  return out;
}

Result<SliceTable> decode_slot(const Superblock& sb,
                               std::span<const uint8_t> bytes) {
  if (bytes.size() < kSlotHeaderBytes)
    return corrupt("metadata slot truncated");
  if (std::memcmp(bytes.data(), kSlotMagic, 8) != 0)
    return corrupt("metadata slot has no header (bad magic)");
  Reader h(bytes.first(kSlotHeaderBytes));
  h.skip(8);
  uint32_t version = h.u32();
  uint32_t header_bytes = h.u32();
  SliceTable t;
  t.generation = h.u64();
  uint64_t payload = h.u64();
  uint32_t count = h.u32();
  uint32_t payload_crc = h.u32();
  auto uuid = h.bytes(16);
  h.u32();
  uint32_t header_crc = h.u32();
  if (header_crc != crc32c(bytes.data(), kSlotHeaderCrcOffset))
    return corrupt("metadata slot header CRC32C mismatch");
  if (version < kSlotVersionNames || version > kSlotVersionCurrent ||
      header_bytes != kSlotHeaderBytes)
    return corrupt("metadata slot version " + std::to_string(version) +
                   "; this pcimirror reads versions 1 to 3");
  t.slot_version = version;
  if (!std::equal(uuid.begin(), uuid.end(), sb.uuid.begin()))
    return corrupt("metadata slot belongs to another volume (UUID mismatch)");
  if (t.generation == 0) return corrupt("metadata slot generation is 0");
  if (payload > bytes.size() - kSlotHeaderBytes)
    return corrupt("metadata slot payload of " + std::to_string(payload) +
                   " bytes overruns the slot");
  auto body = bytes.subspan(kSlotHeaderBytes, payload);
  if (payload_crc != crc32c(body.data(), body.size()))
    return corrupt("metadata slot payload CRC32C mismatch");
  Reader r(body);
  const bool ids = version >= kSlotVersionIds;
  if (version == kSlotVersionIds) {
    t.next_slice_id = r.u64();
    r.u64();
    if (!r.ok()) return corrupt("metadata slot table header is truncated");
  } else if (version >= kSlotVersionTableHeader) {
    t.next_slice_id = r.u64();
    const uint64_t canary_offset = r.u64();
    const uint32_t canary_bytes = r.u32();
    const uint32_t flags = r.u32();
    auto nonce = r.bytes(16);
    t.dirty_shutdowns = r.u64();
    t.last_dirty_shutdown_ns = r.i64();
    bool zero = true;
    for (uint8_t b : r.bytes(kTableHeaderBytes - 56)) zero = zero && b == 0;
    if (!r.ok()) return corrupt("metadata slot table header is truncated");
    if ((flags & ~(kTableFlagMounted | kTableFlagLastShutdownDirty)) || !zero)
      return corrupt("metadata slot table header has reserved bytes set");
    t.mounted = flags & kTableFlagMounted;
    t.last_shutdown_dirty = flags & kTableFlagLastShutdownDirty;
    if (canary_bytes == kCanaryBytes) {
      CanaryRecord c;
      c.offset_bytes = canary_offset;
      std::copy(nonce.begin(), nonce.end(), c.nonce.begin());
      t.canary = c;
    } else if (canary_bytes != 0 || canary_offset != 0) {
      return corrupt("metadata slot canary record has canary_bytes " +
                     std::to_string(canary_bytes));
    }
  }
  const size_t fixed = ids ? kEntryFixedBytesV2 : kEntryFixedBytesV1;
  for (uint32_t i = 0; i < count; ++i) {
    size_t start = r.pos();
    uint32_t entry_bytes = r.u32();
    if (!r.ok() || entry_bytes < fixed || entry_bytes % 8 ||
        entry_bytes > body.size() - start)
      return corrupt("slice entry " + std::to_string(i) + " has a bad size");
    Reader e(body.subspan(start + 4, entry_bytes - 4));
    r.skip(entry_bytes - 4);
    SliceEntry s;
    uint16_t name_bytes = e.u16();
    s.flags = e.u16();
    s.mode = e.u32();
    s.uid = e.u32();
    s.gid = e.u32();
    uint32_t copies = e.u32();
    s.offset_bytes = e.u64();
    s.length_bytes = e.u64();
    s.atime_ns = e.i64();
    s.mtime_ns = e.i64();
    s.ctime_ns = e.i64();
    s.current_copy = e.u32();
    e.u32();
    // Version 1 has no IDs: slices get 1..n in table order (§9).
    s.id = ids ? e.u64() : i + 1;
    auto name = e.bytes(name_bytes);
    s.name.assign(reinterpret_cast<const char*>(name.data()), name.size());
    e.skip((8 - name_bytes % 8) % 8);
    if (copies < kMinMirrorCopies || copies > kMaxMirrorCopies)
      return corrupt("slice entry " + std::to_string(i) + " has " +
                     std::to_string(copies) + " copies, outside 1 to 16");
    for (uint32_t c = 0; c < copies && e.ok(); ++c) {
      MirrorCopy mc;
      mc.generation = e.u64();
      mc.sync_time_ns = e.i64();
      mc.sync_duration_ns = e.u64();
      mc.crc32c = e.u32();
      mc.path = static_cast<MirrorPath>(e.u32());
      uint32_t nx = e.u32();
      uint32_t nc = e.u32();
      if (uint64_t{nx} * 16 + uint64_t{nc} * 4 > e.remaining())
        return corrupt("slice '" + s.name + "' copy " + std::to_string(c) +
                       " overruns its entry");
      mc.extents.resize(nx);
      for (Extent& x : mc.extents) {
        x.start_sector = e.u64();
        x.sectors = e.u64();
      }
      mc.chunk_crc32c.resize(nc);
      for (uint32_t& crc : mc.chunk_crc32c) crc = e.u32();
      e.skip((8 - (nc * 4) % 8) % 8);
      s.copies.push_back(std::move(mc));
    }
    if (!e.ok())
      return corrupt("slice entry " + std::to_string(i) + " is truncated");
    t.slices.push_back(std::move(s));
  }
  if (!ids) t.next_slice_id = uint64_t{count} + 1;
  PCIM_TRY(validate_table(sb, t));
  return t;
}

std::array<uint8_t, kCanaryBytes> encode_canary(const Superblock& sb,
                                                const CanaryRecord& c) {
  std::vector<uint8_t> out;
  Writer w(out);
  w.bytes("PCIMCNRY", 8);
  w.bytes(sb.uuid.data(), sb.uuid.size());
  w.bytes(c.nonce.data(), c.nonce.size());
  w.zeros(kCanaryBytes - 4 - w.size());
  w.u32(crc32c(out.data(), out.size()));
  std::array<uint8_t, kCanaryBytes> a{};
  std::copy(out.begin(), out.end(), a.begin());
  return a;
}

Status validate_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameBytes)
    return make_error(EINVAL, "slice name '" + name +
                                  "' must be 1 to 255 bytes long");
  if (name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos)
    return make_error(EINVAL, "slice name '" + name +
                                  "' may not be '.', '..' or contain '/'");
  return {};
}

Status validate_new_name(const std::string& name) {
  PCIM_TRY(validate_name(name));
  const auto* p = reinterpret_cast<const unsigned char*>(name.data());
  const size_t n = name.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      len = 1;
      cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    }
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (p[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (ok)
      ok = cp >= kMin[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (!ok)
      return make_error(EINVAL, "slice name is not valid UTF-8 (byte " +
                                    std::to_string(i) + ")");
    if (cp < 0x20 || cp == 0x7F)
      return make_error(EINVAL, "slice name has a control character at byte " +
                                    std::to_string(i) +
                                    "; use printable characters");
    i += len;
  }
  return {};
}

Status validate_table(const Superblock& sb, const SliceTable& table) {
  const uint64_t spb = sb.block_bytes / kSectorBytes;
  std::set<std::string> names;
  std::set<uint64_t> ids;
  std::vector<std::pair<Extent, const std::string*>> all;
  std::vector<std::pair<uint64_t, uint64_t>> windows;
  for (const SliceEntry& s : table.slices) {
    if (!validate_name(s.name).ok())
      return corrupt("slice name '" + s.name + "' is invalid");
    if (!names.insert(s.name).second)
      return corrupt("slice name '" + s.name + "' appears twice");
    // Rule 7: IDs are unique and below next_slice_id, so never reused.
    if (s.id == 0 || s.id >= table.next_slice_id)
      return corrupt("slice '" + s.name + "' has ID " + std::to_string(s.id) +
                     ", outside [1, next_slice_id " +
                     std::to_string(table.next_slice_id) + ")");
    if (!ids.insert(s.id).second)
      return corrupt("slice ID " + std::to_string(s.id) + " appears twice");
    if (s.length_bytes == 0)
      return corrupt("slice '" + s.name + "' has length 0");
    if (s.offset_bytes > sb.region_bytes ||
        s.length_bytes > sb.region_bytes - s.offset_bytes)
      return corrupt("slice '" + s.name + "' lies outside the region of " +
                     std::to_string(sb.region_bytes) + " bytes");
    windows.emplace_back(s.offset_bytes, s.offset_bytes + s.length_bytes);
    // Rule 3 bounds a slice by the data area. Checking it first keeps the
    // sizes below far from 2^64: a crafted length_bytes near 2^64 wrapped
    // the mirror size and the chunk count to 0.
    const uint64_t need = mirror_sectors(s.length_bytes);
    if (need > sb.data_sectors)
      return corrupt("slice '" + s.name + "' has length_bytes " +
                     std::to_string(s.length_bytes) +
                     ", more than the data area of " +
                     std::to_string(sb.data_sectors) +
                     " sectors can hold (damaged metadata: run 'pcimirror "
                     "fsck')");
    if (s.copies.empty() || s.current_copy >= s.copies.size())
      return corrupt("slice '" + s.name + "' names copy " +
                     std::to_string(s.current_copy) + " of " +
                     std::to_string(s.copies.size()));
    const uint64_t chunks = chunk_count(s.length_bytes, sb.crc_chunk_bytes);
    for (size_t c = 0; c < s.copies.size(); ++c) {
      const MirrorCopy& mc = s.copies[c];
      uint64_t have = 0;  // saturates: extents may still overlap here
      for (const Extent& x : mc.extents) {
        if (x.sectors == 0 || x.start_sector % spb || x.sectors % spb ||
            x.start_sector < sb.data_start_sector ||
            x.sectors > sb.data_end_sector() ||
            x.start_sector > sb.data_end_sector() - x.sectors)
          return corrupt("slice '" + s.name + "' copy " + std::to_string(c) +
                         " has extent " + std::to_string(x.start_sector) + "+" +
                         std::to_string(x.sectors) +
                         " outside the data area or unaligned");
        have = x.sectors > UINT64_MAX - have ? UINT64_MAX : have + x.sectors;
        all.emplace_back(x, &s.name);
      }
      if (have < need)
        return corrupt("slice '" + s.name + "' copy " + std::to_string(c) +
                       " holds " + std::to_string(have) + " sectors, needs " +
                       std::to_string(need));
      if (mc.generation != 0 && mc.chunk_crc32c.size() != chunks)
        return corrupt("slice '" + s.name + "' copy " + std::to_string(c) +
                       " has " + std::to_string(mc.chunk_crc32c.size()) +
                       " chunk CRCs, needs " + std::to_string(chunks));
    }
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.first.start_sector < b.first.start_sector;
  });
  for (size_t i = 1; i < all.size(); ++i)
    if (all[i].first.start_sector < all[i - 1].first.end_sector())
      return corrupt("extents of slices '" + *all[i - 1].second + "' and '" +
                     *all[i].second + "' overlap at sector " +
                     std::to_string(all[i].first.start_sector));
  std::sort(windows.begin(), windows.end());
  for (size_t i = 1; i < windows.size(); ++i)
    if (windows[i].first < windows[i - 1].second)
      return corrupt("two slices overlap in the region at byte " +
                     std::to_string(windows[i].first));
  // Rule 8: the canary is aligned, inside the region and outside every
  // slice.
  if (table.canary) {
    const uint64_t off = table.canary->offset_bytes;
    if (off % kCanaryAlignBytes || off > sb.region_bytes ||
        sb.region_bytes - off < kCanaryBytes)
      return corrupt("the canary at byte " + std::to_string(off) +
                     " is unaligned or outside the region");
    for (const auto& [start, end] : windows)
      if (off < end && start < off + kCanaryBytes)
        return corrupt("the canary at byte " + std::to_string(off) +
                       " overlaps a slice");
  }
  return {};
}

}  // namespace pcimirror
