#include "fs/allocator.h"

#include <algorithm>

namespace pcimirror {

Result<Allocator> Allocator::from_table(const Superblock& sb,
                                        const SliceTable& table) {
  std::vector<Extent> used;
  for (const SliceEntry& s : table.slices)
    for (const MirrorCopy& c : s.copies)
      used.insert(used.end(), c.extents.begin(), c.extents.end());
  std::sort(used.begin(), used.end(), [](const Extent& a, const Extent& b) {
    return a.start_sector < b.start_sector;
  });
  Allocator a;
  a.total_sectors_ = sb.data_sectors;
  uint64_t cursor = sb.data_start_sector;
  for (const Extent& x : used) {
    if (x.start_sector < cursor || x.end_sector() > sb.data_end_sector())
      return make_error(EUCLEAN, "extent " + std::to_string(x.start_sector) +
                                     "+" + std::to_string(x.sectors) +
                                     " overlaps another or leaves the data area");
    if (x.start_sector > cursor) a.insert_free(cursor, x.start_sector - cursor);
    cursor = x.end_sector();
  }
  if (cursor < sb.data_end_sector())
    a.insert_free(cursor, sb.data_end_sector() - cursor);
  return a;
}

void Allocator::insert_free(uint64_t start, uint64_t sectors) {
  if (sectors == 0) return;
  free_sectors_ += sectors;
  auto next = free_.lower_bound(start);
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      sectors += prev->second;
      free_.erase(prev);
    }
  }
  if (next != free_.end() && start + sectors == next->first) {
    sectors += next->second;
    free_.erase(next);
  }
  free_[start] = sectors;
}

Result<std::vector<Extent>> Allocator::allocate(uint64_t sectors) {
  sectors = (sectors + block_sectors_ - 1) / block_sectors_ * block_sectors_;
  if (sectors == 0) return std::vector<Extent>{};
  if (sectors > free_sectors_)
    return make_error(ENOSPC, "need " + std::to_string(sectors) +
                                  " sectors, " + std::to_string(free_sectors_) +
                                  " are free");
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second >= sectors) {
      Extent x{it->first, sectors};
      uint64_t rest = it->second - sectors;
      free_.erase(it);
      if (rest) free_[x.end_sector()] = rest;
      free_sectors_ -= sectors;
      return std::vector<Extent>{x};
    }
  }
  std::vector<Extent> out;
  uint64_t need = sectors;
  while (need > 0) {
    auto it = free_.begin();
    uint64_t take = std::min(need, it->second);
    out.push_back({it->first, take});
    uint64_t rest = it->second - take;
    uint64_t start = it->first + take;
    free_.erase(it);
    if (rest) free_[start] = rest;
    need -= take;
  }
  free_sectors_ -= sectors;
  return out;
}

void Allocator::release(std::span<const Extent> extents) {
  for (const Extent& x : extents) insert_free(x.start_sector, x.sectors);
}

void Allocator::reserve(std::span<const Extent> extents) {
  for (const Extent& x : extents) {
    const uint64_t lo = x.start_sector, hi = x.end_sector();
    // Free extents overlapping [lo, hi): the one starting before lo, if it
    // reaches past lo, and every one starting in [lo, hi).
    std::vector<std::pair<uint64_t, uint64_t>> hit;
    auto it = free_.lower_bound(lo);
    if (it != free_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second > lo) hit.push_back(*prev);
    }
    for (; it != free_.end() && it->first < hi; ++it) hit.push_back(*it);
    for (const auto& [s, n] : hit) {
      free_.erase(s);
      free_sectors_ -= n;
      if (s < lo) insert_free(s, lo - s);
      if (s + n > hi) insert_free(hi, s + n - hi);
    }
  }
}

std::vector<Extent> Allocator::free_extents() const {
  std::vector<Extent> out;
  for (const auto& [s, n] : free_) out.push_back({s, n});
  return out;
}

}  // namespace pcimirror
