#include "fs/slice_table.h"

#include <algorithm>

namespace pcimirror {

Result<uint64_t> add_slice_to(const Volume& volume, SliceTable& table,
                              SliceEntry e) {
  PCIM_TRY(validate_new_name(e.name));
  for (const SliceEntry& s : table.slices)
    if (s.name == e.name)
      return make_error(EEXIST, "a slice named '" + e.name + "' exists already");
  const Superblock& sb = volume.superblock();
  if (e.length_bytes == 0)
    return make_error(EINVAL, "slice '" + e.name + "' needs a length of at least 1 byte");
  if (e.offset_bytes > sb.region_bytes || e.length_bytes > sb.region_bytes - e.offset_bytes)
    return make_error(EINVAL, "slice '" + e.name + "' [" + std::to_string(e.offset_bytes) +
                                  ", +" + std::to_string(e.length_bytes) +
                                  ") lies beyond the region of " +
                                  std::to_string(sb.region_bytes) + " bytes");
  for (const SliceEntry& s : table.slices)
    if (e.offset_bytes < s.offset_bytes + s.length_bytes &&
        s.offset_bytes < e.offset_bytes + e.length_bytes)
      return make_error(EINVAL, "slice '" + e.name + "' would overlap slice '" +
                                    s.name + "' in the region; choose a free window");
  if (table.canary &&
      e.offset_bytes < table.canary->offset_bytes + kCanaryBytes &&
      table.canary->offset_bytes < e.offset_bytes + e.length_bytes)
    return make_error(
        EINVAL, "slice '" + e.name + "' would overlap the canary at byte " +
                    std::to_string(table.canary->offset_bytes) +
                    " (64 bytes pcimirror owns); choose a free window");
  if (e.copies.empty()) e.copies.resize(sb.mirror_copies);
  PCIM_ASSIGN_OR_RETURN(Allocator alloc, volume.allocator());
  // Extents already taken by edits in `table` that are not committed yet.
  for (const SliceEntry& s : table.slices)
    for (const MirrorCopy& c : s.copies) alloc.reserve(c.extents);
  for (MirrorCopy& c : e.copies) {
    auto got = alloc.allocate(mirror_sectors(e.length_bytes));
    if (!got.ok())
      return make_error(ENOSPC, "no room on " + volume.device().path() + " for the " +
                                    std::to_string(e.copies.size()) +
                                    " mirror copies of slice '" + e.name + "' (" +
                                    std::to_string(e.length_bytes) + " bytes each)");
    c = MirrorCopy{};
    c.extents = std::move(got).value();
  }
  if (table.next_slice_id == UINT64_MAX)
    return make_error(EOVERFLOW, "volume on " + volume.device().path() +
                                     " has given out every slice ID");
  e.id = table.next_slice_id++;
  e.current_copy = 0;
  table.slices.push_back(std::move(e));
  return table.slices.back().id;
}

Result<uint64_t> slice_id_of(const SliceTable& table, const std::string& name) {
  if (const SliceEntry* e = table.find_name(name)) return e->id;
  return make_error(ENOENT, "no slice named '" + name + "'");
}

Status remove_slice_from(SliceTable& table, uint64_t id) {
  auto it = std::find_if(table.slices.begin(), table.slices.end(),
                         [&](const SliceEntry& s) { return s.id == id; });
  if (it == table.slices.end())
    return make_error(ENOENT, "no slice with ID " + std::to_string(id));
  table.slices.erase(it);
  return {};
}

Status rename_slice_in(SliceTable& table, uint64_t id, const std::string& to) {
  PCIM_TRY(validate_new_name(to));
  SliceEntry* src = table.find_id(id);
  if (!src) return make_error(ENOENT, "no slice with ID " + std::to_string(id));
  if (src->name == to) return {};
  if (table.find_name(to))
    return make_error(EEXIST, "a slice named '" + to + "' exists already");
  src->name = to;
  return {};
}

}  // namespace pcimirror
