#include "fs/allocator.h"

#include <gtest/gtest.h>

namespace pcimirror {
namespace {

Superblock sb_with_data(uint64_t start, uint64_t sectors) {
  Superblock sb;
  sb.data_start_sector = start;
  sb.data_sectors = sectors;
  return sb;
}

TEST(Allocator, EmptyTableIsAllFree) {
  auto a = Allocator::from_table(sb_with_data(2048, 8000), SliceTable{});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->free_sectors(), 8000u);
  EXPECT_EQ(a->free_extents(), (std::vector<Extent>{{2048, 8000}}));
}

TEST(Allocator, FirstFitTakesLowestHole) {
  auto a = *Allocator::from_table(sb_with_data(0, 1000), SliceTable{});
  auto x = *a.allocate(100);  // rounds up to 104 (allocation blocks)
  EXPECT_EQ(x, (std::vector<Extent>{{0, 104}}));
  auto y = *a.allocate(8);
  EXPECT_EQ(y, (std::vector<Extent>{{104, 8}}));
  a.release(x);
  auto z = *a.allocate(16);
  EXPECT_EQ(z, (std::vector<Extent>{{0, 16}}));  // reuses the first hole
  EXPECT_EQ(a.free_sectors(), 1000u - 8 - 16 + 0 - 0);
}

TEST(Allocator, SplitsAcrossHolesWhenNoneFits) {
  SliceTable t;
  SliceEntry e;
  e.name = "a";
  e.copies.resize(1);
  e.copies[0].extents = {{16, 8}, {40, 8}};
  t.slices.push_back(e);
  auto a = *Allocator::from_table(sb_with_data(0, 64), t);
  // Free: [0,16) [24,40) [48,64) = 48 sectors; ask 40.
  auto x = *a.allocate(40);
  EXPECT_EQ(x, (std::vector<Extent>{{0, 16}, {24, 16}, {48, 8}}));
  EXPECT_EQ(a.free_sectors(), 8u);
}

TEST(Allocator, EnospcChangesNothing) {
  auto a = *Allocator::from_table(sb_with_data(0, 64), SliceTable{});
  auto r = a.allocate(72);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOSPC);
  EXPECT_EQ(a.free_sectors(), 64u);
}

TEST(Allocator, ReleaseMergesNeighbours) {
  auto a = *Allocator::from_table(sb_with_data(0, 64), SliceTable{});
  auto x = *a.allocate(16), y = *a.allocate(16), z = *a.allocate(16);
  a.release(x);
  a.release(z);
  a.release(y);
  EXPECT_EQ(a.free_extents(), (std::vector<Extent>{{0, 64}}));
}

TEST(Allocator, RefusesOverlappingTable) {
  SliceTable t;
  SliceEntry e;
  e.name = "a";
  e.copies.resize(2);
  e.copies[0].extents = {{0, 16}};
  e.copies[1].extents = {{8, 16}};
  t.slices.push_back(e);
  EXPECT_EQ(Allocator::from_table(sb_with_data(0, 64), t).error().code, EUCLEAN);
}

}  // namespace
}  // namespace pcimirror

namespace pcimirror {
namespace {

TEST(Allocator, ReserveTakesOnlyTheFreePartsOfRanges) {
  SliceTable t;
  SliceEntry e;
  e.name = "a";
  e.copies.resize(1);
  e.copies[0].extents = {{16, 8}};
  t.slices.push_back(e);
  Superblock sb;
  sb.data_start_sector = 0;
  sb.data_sectors = 64;
  auto a = *Allocator::from_table(sb, t);  // free: [0,16) [24,64)
  std::vector<Extent> keep = {{8, 24}, {56, 16}};  // overlaps used and the end
  a.reserve(keep);
  EXPECT_EQ(a.free_extents(), (std::vector<Extent>{{0, 8}, {32, 24}}));
  EXPECT_EQ(a.free_sectors(), 32u);
}

}  // namespace
}  // namespace pcimirror
