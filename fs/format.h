// Encoding, decoding and validation of the on-disk format, version 1 with
// the `slice_ids` and `table_header` features (metadata slot version 3).
// docs/FORMAT.md is the specification; section numbers below refer to it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "io/result.h"

namespace pcimirror {

constexpr uint32_t kSectorBytes = 512;            // §1
constexpr uint32_t kBlockBytes = 4096;            // §1 allocation block
constexpr uint32_t kSuperblockBytes = 4096;       // §3
constexpr uint32_t kFormatVersion = 1;            // §3 superblock version
/// §4 metadata slot versions: 1 names slices only (volumes formatted before
/// stable slice IDs); 2 adds a 16-byte table header and a slice ID per entry
/// (§4.1); 3 widens the table header to 64 bytes for the canary record
/// (§4.2). Readers accept all three; writers write kSlotVersionCurrent.
constexpr uint32_t kSlotVersionNames = 1, kSlotVersionIds = 2,
                   kSlotVersionTableHeader = 3;
constexpr uint32_t kSlotVersionCurrent = kSlotVersionTableHeader;
constexpr uint32_t kSlotHeaderBytes = 64;         // §4
constexpr uint32_t kTableHeaderBytesV2 = 16;      // §4, slot version 2
constexpr uint32_t kTableHeaderBytes = 64;        // §4, slot version 3
constexpr uint32_t kCanaryBytes = 64;             // §4.2
/// §4 table header `flags` (slot version 3).
constexpr uint32_t kTableFlagMounted = 1u << 0,
                   kTableFlagLastShutdownDirty = 1u << 1;
constexpr uint32_t kCanaryAlignBytes = 8;         // §4.2, §6 rule 8
constexpr uint32_t kCrcChunkBytes = 1u << 20;     // §3 crc_chunk_bytes
constexpr uint64_t kDefaultMetaSlotBytes = 4u << 20;  // §2
constexpr uint64_t kLayoutAlignBytes = 1u << 20;  // §2
constexpr size_t kMaxNameBytes = 255;             // §4.1
constexpr size_t kMemorySpecBytes = 512;          // §3
constexpr size_t kLabelBytes = 64;                // §3
/// §3 incompat feature `slice_ids`: set by format, so that a release
/// without slice IDs refuses a volume made with them. An upgraded volume
/// keeps its superblock as it was (§9): its version-2 slots are what older
/// releases cannot read.
constexpr uint64_t kIncompatSliceIds = 1u << 0;
/// §3 incompat feature `table_header`: set by format since slot version 3
/// (the canary record, §4.2), so that older releases refuse the volume.
constexpr uint64_t kIncompatTableHeader = 1u << 1;
/// §3 incompat feature `generations`: set by format when `mirror_copies` is
/// above 2 (a history of generations, §7), so that a release that keeps
/// at most two copies per slice refuses the volume.
constexpr uint64_t kIncompatGenerations = 1u << 2;
/// Feature bits this build knows (§3).
constexpr uint64_t kKnownIncompat =
                       kIncompatSliceIds | kIncompatTableHeader |
                       kIncompatGenerations,
                   kKnownRoCompat = 0, kKnownCompat = 0;
/// §3 `mirror_copies`, §4.1 `copy_count`: 1 (in place) to 16 copies per
/// slice; 2 (A/B) is the default.
constexpr uint32_t kMinMirrorCopies = 1, kMaxMirrorCopies = 16,
                   kDefaultMirrorCopies = 2;

/// §4.1 copy `path`: how a mirror's bytes reached the disk.
/// kDma (4): the bounce pool filled by a DMA region's engine (pread of its
/// c2h channel). A reader that predates it shows "unknown".
enum class MirrorPath : uint32_t {
  kNone = 0,
  kZeroCopy = 1,
  kBounce = 2,
  kMixed = 3,
  kDma = 4
};
const char* to_string(MirrorPath p);

/// A run of the data area, in 512-byte sectors.
struct Extent {
  uint64_t start_sector = 0;
  uint64_t sectors = 0;
  uint64_t end_sector() const { return start_sector + sectors; }
  bool operator==(const Extent&) const = default;
};

/// One mirror copy of a slice (§4.1).
struct MirrorCopy {
  uint64_t generation = 0;  ///< 0: never written
  int64_t sync_time_ns = 0;
  uint64_t sync_duration_ns = 0;
  uint32_t crc32c = 0;
  MirrorPath path = MirrorPath::kNone;
  std::vector<Extent> extents;
  std::vector<uint32_t> chunk_crc32c;
  bool operator==(const MirrorCopy&) const = default;
};

/// One slice: a window of the region and its mirror copies (§4.1).
struct SliceEntry {
  /// Stable slice ID (§4.1): ≥ 1, unique in the volume and never reused,
  /// even after the slice is removed. The engine, write-behind and the FUSE
  /// layer address slices by it; the name is a label that rename changes.
  uint64_t id = 0;
  std::string name;
  uint16_t flags = 0;
  uint32_t mode = 0644;
  uint32_t uid = 0, gid = 0;
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0;
  uint32_t current_copy = 0;
  std::vector<MirrorCopy> copies;

  /// The slice's mirror generation: the largest of its copies'.
  uint64_t generation() const;
  /// The committed mirror, or nullptr when never mirrored.
  const MirrorCopy* committed() const;
  /// The copy the next sync writes (§7 step 1): with one copy, copy 0 (in
  /// place); with no committed mirror, `current_copy`; else the unwritten
  /// copy (generation 0) with the lowest index, else the copy with the
  /// lowest generation (lowest index among equals). Never the current copy
  /// when there are two or more and a committed mirror.
  uint32_t next_copy() const;
  /// Indices of the written copies (generation != 0), newest generation
  /// first (lower index first among equal generations): the order of a
  /// slice's history (`pcimirror log`) and of restore's fallback (§8).
  std::vector<uint32_t> copies_by_generation() const;
  bool operator==(const SliceEntry&) const = default;
};

struct Superblock {
  uint32_t version = kFormatVersion;
  uint64_t incompat_features = 0, ro_compat_features = 0, compat_features = 0;
  std::array<uint8_t, 16> uuid{};
  std::string label;
  uint32_t logical_block_size = 512;
  uint32_t block_bytes = kBlockBytes;
  uint64_t device_bytes = 0;
  std::array<uint64_t, 2> meta_slot_sector{};
  uint64_t meta_slot_sectors = 0;
  uint64_t data_start_sector = 0;
  uint64_t data_sectors = 0;
  uint64_t backup_superblock_sector = 0;
  uint64_t region_bytes = 0;
  uint16_t pci_vendor_id = 0, pci_device_id = 0;
  uint64_t pci_bar_bytes = 0;  ///< whole BAR at format, 0 when emulated
  uint32_t crc_chunk_bytes = kCrcChunkBytes;
  int64_t format_time_ns = 0;
  uint32_t mirror_copies = kDefaultMirrorCopies;  ///< 1..16 (§3)
  std::string memory_spec;

  uint64_t data_end_sector() const { return data_start_sector + data_sectors; }
  std::string uuid_string() const;
  bool operator==(const Superblock&) const = default;
};

/// §4.2 The canary: 64 bytes of the region, outside every slice, that
/// pcimirror owns. It holds encode_canary(sb, record); a mismatch in memory
/// means the board's memory was reset or reloaded since pcimirror last
/// wrote it.
struct CanaryRecord {
  uint64_t offset_bytes = 0;  ///< in the region, kCanaryAlignBytes-aligned
  std::array<uint8_t, 16> nonce{};  ///< random, renewed by restore/accept
  bool operator==(const CanaryRecord&) const = default;
};

/// The 64 bytes that the canary `c` of volume `sb` holds in memory (§4.2):
/// magic "PCIMCNRY", the volume UUID, the nonce, zeros, CRC32C.
std::array<uint8_t, kCanaryBytes> encode_canary(const Superblock& sb,
                                                const CanaryRecord& c);

/// The decoded content of a metadata slot.
struct SliceTable {
  uint64_t generation = 0;  ///< metadata commit counter (§4)
  /// The ID the next new slice gets (§4): above every ID ever given in the
  /// volume, so IDs are never reused.
  uint64_t next_slice_id = 1;
  /// The slot version this table was read from (§4): below
  /// kSlotVersionCurrent for a volume that the next commit upgrades (§9).
  /// Not encoded: writers always write kSlotVersionCurrent.
  uint32_t slot_version = kSlotVersionCurrent;
  /// The canary (§4.2), when the volume has one (slot version 3).
  std::optional<CanaryRecord> canary;
  /// §4 shutdown record (slot version 3), as `ndctl` reports
  /// shutdown_state: `mounted` is set by a writable mount's first commit
  /// and cleared by a clean unmount (every slice mirrored after its last
  /// write); a mount that finds it set counts a dirty shutdown.
  bool mounted = false;
  bool last_shutdown_dirty = false;    ///< the previous mount ended dirty
  uint64_t dirty_shutdowns = 0;        ///< dirty shutdowns counted so far
  int64_t last_dirty_shutdown_ns = 0;  ///< when the last one was counted
  std::vector<SliceEntry> slices;

  /// The entry with ID `id`, or nullptr.
  const SliceEntry* find_id(uint64_t id) const;
  SliceEntry* find_id(uint64_t id);
  /// The entry named `name`, or nullptr.
  const SliceEntry* find_name(const std::string& name) const;
};

/// Computes a fresh layout (§2) for a device of `device_bytes` with slots of
/// `meta_slot_bytes`, every sum checked for overflow. EINVAL naming
/// --metadata-size when the slot size is not a multiple of 4096, below
/// 16 KiB or larger than the device; ENOSPC when the device has no room for
/// the slots and a data area.
Result<Superblock> plan_layout(uint64_t device_bytes,
                               uint32_t logical_block_size,
                               uint64_t meta_slot_bytes);

/// 4096 bytes (§3), CRC filled in.
std::vector<uint8_t> encode_superblock(const Superblock& sb);
/// Validates magic, version, CRC and layout (§3). EINVAL with the reason;
/// EUCLEAN for a CRC mismatch.
Result<Superblock> decode_superblock(std::span<const uint8_t> bytes);

/// Encodes a slot (§4), padded with zeros to a multiple of 4096. E2BIG when
/// it does not fit the superblock's slot size.
Result<std::vector<uint8_t>> encode_slot(const Superblock& sb,
                                         const SliceTable& table);
/// Decodes and validates a slot (§4, §6), version 1, 2 or 3. A version-1 slot
/// gets slice IDs 1..n in table order and next_slice_id n + 1 (§9).
/// EINVAL/EUCLEAN with the reason.
Result<SliceTable> decode_slot(const Superblock& sb,
                               std::span<const uint8_t> bytes);

/// Checks the invariants of §6. EUCLEAN naming the first violation.
Status validate_table(const Superblock& sb, const SliceTable& table);

/// Checks a slice name against §6 rule 4. EINVAL with the reason.
Status validate_name(const std::string& name);

/// validate_name(), plus the rule for names this release writes (§6 rule
/// 4a): valid UTF-8 without control characters (U+0000–U+001F, U+007F), so
/// names survive newline-separated lists, JSON and terminals. Used by
/// format, `slice add` and `slice rename`; loading accepts older names.
/// EINVAL naming the offending byte offset.
Status validate_new_name(const std::string& name);

/// Number of chunk CRCs for a slice of `length_bytes` (§4.1), rounded up
/// without wrapping for any length.
inline uint64_t chunk_count(uint64_t length_bytes, uint32_t crc_chunk_bytes) {
  return length_bytes / crc_chunk_bytes +
         (length_bytes % crc_chunk_bytes != 0 ? 1 : 0);
}
/// Sectors that a copy's extents must hold: length rounded up to the
/// allocation block (§6 rule 3). Exact for any length (at most 2^55).
inline uint64_t mirror_sectors(uint64_t length_bytes) {
  constexpr uint64_t spb = kBlockBytes / kSectorBytes;
  const uint64_t sectors =
      length_bytes / kSectorBytes + (length_bytes % kSectorBytes != 0 ? 1 : 0);
  return (sectors + spb - 1) / spb * spb;
}
/// Bytes of mirror image: length rounded up to the allocation block. Only
/// for lengths that validate_table() accepted (at most the data area), which
/// keeps the sum far from 2^64; mirror_sectors() holds for any length.
inline uint64_t mirror_bytes(uint64_t length_bytes) {
  return (length_bytes + kBlockBytes - 1) / kBlockBytes * kBlockBytes;
}

}  // namespace pcimirror
