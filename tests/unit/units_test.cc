#include "io/units.h"

#include <gtest/gtest.h>

#include "pcimap/file_region.h"
#include "pcimap/region_factory.h"

namespace pcimirror {
namespace {

TEST(Units, ParsesSuffixes) {
  EXPECT_EQ(*parse_size_bytes("4096", "x"), 4096u);
  EXPECT_EQ(*parse_size_bytes("64K", "x"), 65536u);
  EXPECT_EQ(*parse_size_bytes("256M", "x"), 256ull << 20);
  EXPECT_EQ(*parse_size_bytes("1g", "x"), 1ull << 30);
  EXPECT_EQ(*parse_size_bytes("2TiB", "x"), 2ull << 40);
  EXPECT_EQ(*parse_uint("0x1af4", "x"), 0x1af4u);
}

TEST(Units, RejectsJunkAndOverflow) {
  EXPECT_EQ(parse_size_bytes("", "x").error().code, EINVAL);
  EXPECT_EQ(parse_size_bytes("12Q", "x").error().code, EINVAL);
  EXPECT_EQ(parse_size_bytes("-1", "x").error().code, EINVAL);
  EXPECT_EQ(parse_size_bytes("1.5G", "x").error().code, EINVAL);
  EXPECT_EQ(parse_size_bytes("99999999999999999999", "x").error().code, ERANGE);
  EXPECT_EQ(parse_size_bytes("17179869184G", "x").error().code, ERANGE);
  auto e = parse_size_bytes("12Q", "--slice a:0:12Q length");
  EXPECT_NE(e.error().message.find("--slice a:0:12Q"), std::string::npos);
}

TEST(MemorySpec, ParsesAndRejects) {
  auto s = MemorySpec::parse("file=/dev/shm/x,size=16M");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->get("file"), "/dev/shm/x");
  EXPECT_EQ(s->to_string(), "file=/dev/shm/x,size=16M");
  EXPECT_EQ(MemorySpec::parse("file=a,colour=red").error().code, EINVAL);
  EXPECT_EQ(MemorySpec::parse("file=a,file=b").error().code, EINVAL);
  EXPECT_EQ(MemorySpec::parse("size=1M").error().code, EINVAL);
  EXPECT_EQ(MemorySpec::parse("file=").error().code, EINVAL);
}

TEST(FileRegion, CreatesUsesAndRefusesSizes) {
  std::string path = "/dev/shm/pcimirror-unit-" + std::to_string(getpid());
  ::unlink(path.c_str());
  EXPECT_EQ(FileRegion::open_file(path, 0).error().code, EINVAL);  // no size
  {
    auto r = FileRegion::open_file(path, 1 << 20);
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ((*r)->size_bytes(), 1u << 20);
    EXPECT_TRUE((*r)->pages_pinnable());
    (*r)->base()[5] = std::byte{42};
  }
  {
    auto r = FileRegion::open_file(path, 0);  // size from the file
    ASSERT_TRUE(r.ok());
    EXPECT_EQ((*r)->base()[5], std::byte{42});  // MAP_SHARED persisted
  }
  EXPECT_EQ(FileRegion::open_file(path, 2 << 20).error().code, EINVAL);
  ::unlink(path.c_str());
  auto m = FileRegion::create_memfd("t", 4096);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE((*m)->contains(0, 4096));
  EXPECT_FALSE((*m)->contains(1, 4096));
  EXPECT_FALSE((*m)->contains(UINT64_MAX, 2));
}

}  // namespace
}  // namespace pcimirror
