// Edits of the slice table that change which slices exist: add, remove,
// rename. Each is one metadata commit (docs/FORMAT.md §7), so each is as
// crash-safe as a sync. Used by `pcimirror slice`: offline directly, and on
// a mounted volume through the daemon (SliceFs, MirrorEngine).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fs/format.h"
#include "fs/volume.h"
#include "io/result.h"

namespace pcimirror {

/// Adds `entry` to `table` with fresh extents for each of its copies
/// (entry.copies.size() of them, mirror_copies when empty), allocated from
/// `volume.allocator()`. EEXIST for a taken name, EINVAL for a bad name or a
/// window outside the region or overlapping another slice, ENOSPC when the
/// data area is full. Does not commit.
Status add_slice_to(const Volume& volume, SliceTable& table, SliceEntry entry);

/// Removes slice `name` from `table`; its extents become free after the
/// next commit. ENOENT. Does not commit.
Status remove_slice_from(SliceTable& table, const std::string& name);

/// Renames slice `from` to `to` in `table`. If `to` exists it is removed
/// when `replace`, else EEXIST. ENOENT, EINVAL (bad name). Does not commit.
Status rename_slice_in(SliceTable& table, const std::string& from,
                       const std::string& to, bool replace);

}  // namespace pcimirror
