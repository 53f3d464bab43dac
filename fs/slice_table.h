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

/// Adds `entry` to `table` with a new slice ID (table.next_slice_id, which
/// then advances: IDs are never reused, docs/FORMAT.md §4) and fresh
/// extents for each of its copies (entry.copies.size() of them,
/// mirror_copies when empty), allocated from `volume.allocator()`. Returns
/// the new ID. EEXIST for a taken name, EINVAL for a bad name or a window
/// outside the region or overlapping another slice, ENOSPC when the data
/// area is full, EOVERFLOW when the volume has used up its IDs. Does not
/// commit.
Result<uint64_t> add_slice_to(const Volume& volume, SliceTable& table,
                              SliceEntry entry);

/// The ID of slice `name` in `table`: how the CLI, which takes names, turns
/// them into the IDs that the engine addresses. ENOENT naming the slice.
Result<uint64_t> slice_id_of(const SliceTable& table, const std::string& name);

/// Removes slice `id` from `table`; its extents become free after the next
/// commit, and its ID is never given again. ENOENT. Does not commit.
Status remove_slice_from(SliceTable& table, uint64_t id);

/// Renames slice `id` to `to` in `table`: only its label changes, never its
/// window or ID. EEXIST when another slice is named `to` (a rename never
/// replaces a slice), ENOENT, EINVAL (bad name). Does not commit.
Status rename_slice_in(SliceTable& table, uint64_t id, const std::string& to);

}  // namespace pcimirror
