// The sector allocation map (docs/FORMAT.md §6): never stored, derived from
// the extents of a slice table. Allocation is first-fit over free extents in
// allocation blocks (4096 bytes = 8 sectors).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "fs/format.h"
#include "io/result.h"

namespace pcimirror {

class Allocator {
 public:
  /// Free map of the data area minus every extent of every copy in `table`.
  /// EUCLEAN if extents overlap or leave the data area.
  static Result<Allocator> from_table(const Superblock& sb,
                                      const SliceTable& table);

  /// Allocates `sectors` (rounded up to the allocation block). First-fit:
  /// the lowest free extent that holds it all; if none does, the lowest free
  /// extents in address order. ENOSPC (and no change) when there is not
  /// enough free space.
  Result<std::vector<Extent>> allocate(uint64_t sectors);
  /// Returns extents to the free map, merging neighbours.
  void release(std::span<const Extent> extents);
  /// Takes every free sector inside `extents` out of the free map (extents
  /// may overlap used space): used to keep the extents that the previous
  /// metadata slot still references from being reused (deferred frees,
  /// docs/FORMAT.md §6).
  void reserve(std::span<const Extent> extents);

  uint64_t free_sectors() const { return free_sectors_; }
  uint64_t total_sectors() const { return total_sectors_; }
  /// Free extents in address order.
  std::vector<Extent> free_extents() const;

 private:
  void insert_free(uint64_t start, uint64_t sectors);
  std::map<uint64_t, uint64_t> free_;  // start_sector -> sectors
  uint64_t free_sectors_ = 0;
  uint64_t total_sectors_ = 0;
  uint64_t block_sectors_ = kBlockBytes / kSectorBytes;
};

}  // namespace pcimirror
