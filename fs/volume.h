// A pcimirror volume on a block device: the superblock, the newest valid
// metadata slot, and the commit protocol of docs/FORMAT.md §7-§8.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fs/allocator.h"
#include "fs/format.h"
#include "io/block_device.h"
#include "io/result.h"

namespace pcimirror {

/// A slice to create at format time.
struct SliceSpec {
  std::string name;
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
};

struct FormatRequest {
  std::string memory_spec;   ///< recorded verbatim (§3)
  uint64_t region_bytes = 0; ///< size of the region at format
  uint16_t pci_vendor_id = 0, pci_device_id = 0;
  uint64_t pci_bar_bytes = 0;
  std::vector<SliceSpec> slices;
  std::string label;
  uint64_t meta_slot_bytes = kDefaultMetaSlotBytes;
  /// Copies per slice, 1..16 (FORMAT.md §3): 1 = in place, 2 = A/B, more
  /// keep older generations.
  uint32_t mirror_copies = kDefaultMirrorCopies;
  uint32_t mode = 0644, uid = 0, gid = 0;
  /// Region offset of the canary (docs/FORMAT.md §4.2), when one is wanted;
  /// plan_format() picks its random nonce.
  std::optional<uint64_t> canary_offset_bytes;
};

/// Checks that a canary at `offset_bytes` fits a region of `region_bytes`
/// and `table` (docs/FORMAT.md §6 rule 8): aligned to kCanaryAlignBytes,
/// 64 bytes inside the region, outside every slice. EINVAL naming the
/// offset and the slice it overlaps, with the remedy.
Status check_canary_window(uint64_t offset_bytes, uint64_t region_bytes,
                           const SliceTable& table);

class Volume {
 public:
  /// Plans a format: the superblock and the initial table (generation 1)
  /// with every slice's extents allocated first-fit. Writes nothing.
  /// EINVAL for bad slices (overlap, outside the region, bad names), ENOSPC
  /// when the mirrors do not fit the data area, each naming the slice.
  static Result<std::pair<Superblock, SliceTable>> plan_format(
      const BlockDevice& device, const FormatRequest& request);

  /// Checks a plan as load() would check the volume: the superblock
  /// decodes (layout inside device_bytes, no overlaps), device_bytes fits
  /// the device, the table passes validate_table and fits its slot. EINVAL
  /// (or the table's error) naming the reason. Writes nothing.
  static Status check_plan(const BlockDevice& device, const Superblock& sb,
                           const SliceTable& table);

  /// Writes a planned volume (§7 "format writes") and returns it opened.
  /// Runs check_plan() first: a plan that fails it writes nothing.
  /// `progress`, when given, gets (bytes written, total) after each write.
  static Result<Volume> write_format(
      BlockDevice device, Superblock sb, SliceTable table,
      const std::function<void(uint64_t, uint64_t)>& progress = {});

  /// Loads the volume on `device` (§8): a valid superblock (primary, else
  /// backup) and the newest valid slot. EINVAL when there is no pcimirror
  /// volume; EUCLEAN when metadata is damaged beyond both copies; ENOSPC
  /// when the device shrank; EINVAL when its logical block size changed.
  static Result<Volume> load(BlockDevice device);

  Volume(Volume&&) = default;
  Volume& operator=(Volume&&) = default;

  const Superblock& superblock() const { return sb_; }
  const SliceTable& table() const { return table_; }
  BlockDevice& device() { return device_; }
  const BlockDevice& device() const { return device_; }
  /// The table of the other metadata slot, when it is valid (the previous
  /// commit): its extents stay reserved until the next commit overwrites it.
  const std::optional<SliceTable>& previous_table() const { return previous_; }
  /// The sector allocation map for new extents: free in the current table
  /// and in the previous one (deferred frees, docs/FORMAT.md §6).
  Result<Allocator> allocator() const;

  /// Warnings raised while loading (a damaged copy that was skipped).
  const std::vector<std::string>& warnings() const { return warnings_; }
  /// True when unknown ro_compat features forbid writes.
  bool read_only() const { return read_only_; }

  /// Commits `next` (§7 steps 3-4): validates it, writes it with generation
  /// table().generation + 1 into slot (generation mod 2), flushes, and makes
  /// it the current table. Slots are always written as version 2 (§4). On
  /// error nothing changes in memory. EROFS,
  /// EUCLEAN (invalid table), EINVAL (next_slice_id went back), or the
  /// write's errno.
  Status commit(SliceTable next);
  /// After a mirror device failed (EIO from a lost NBD server, ENXIO, ...):
  /// closes it, so that it can be reconnected while the daemon serves
  /// device memory (docs/DESIGN.md, "A vanishing target"). Every write
  /// path calls reopen_device() first. Not thread-safe: the engine's lock.
  void release_device() {
    device_.close();
    ++device_epoch_;
  }
  /// Counts releases: write-behind chunks written before a release may not
  /// be on the device that comes back (an NBD server's lost write cache), so
  /// a write-behind of another epoch is never reused (WriteBehind).
  uint64_t device_epoch() const { return device_epoch_; }
  /// release_device() when `err` says the mirror device itself failed
  /// (EIO, ENXIO, ENODEV, ESHUTDOWN, ENOTCONN, ECONNRESET, EPIPE, ETIMEDOUT
  /// from a block device), adding to its message that the device was
  /// closed and is reopened at the next sync. Other errors (ENOSPC from a
  /// full thin pool, EINVAL) keep the device open.
  void release_after(Error& err);
  bool device_released() const { return !device_.is_open(); }
  /// Opens a released device again (exclusively, as before) and checks that
  /// it still holds this volume as this process last committed it: the
  /// same UUID and the current table's generation (nothing else wrote to it
  /// meanwhile). A no-op when the device is open. Errors, each saying that
  /// nothing was committed: the open's errno (ENXIO, ENOENT, EBUSY, ...),
  /// EIO when the volume cannot be read, ESTALE when it is another volume
  /// or another generation. Not thread-safe: the engine's lock.
  Status reopen_device();

  /// True for a volume formatted before stable slice IDs whose current
  /// table is a version-1 slot (§9).
  bool needs_upgrade() const;
  /// Upgrades such a volume in one crash-safe commit of the unchanged table,
  /// written as a version-2 slot (§9); the superblock is not rewritten.
  /// True when it upgraded, false
  /// when there was nothing to do. Errors as commit(). Not thread-safe:
  /// callers hold the volume alone (mount calls it before serving).
  Result<bool> upgrade();

 private:
  explicit Volume(BlockDevice device) : device_(std::move(device)) {}
  Status write_slot(const SliceTable& table);
  BlockDevice device_;
  Superblock sb_;
  SliceTable table_;
  std::optional<SliceTable> previous_;
  std::vector<std::string> warnings_;
  bool read_only_ = false;
  uint64_t device_epoch_ = 0;
};

}  // namespace pcimirror
