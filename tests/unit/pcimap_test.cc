// MMIO copies (on ordinary memory: the access pattern is what differs, not
// the result) and libpciaccess error paths against this machine's real PCI
// devices. Nothing here maps a host BAR: every case fails before mapping.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "pcimap/dma_region.h"
#include "pcimap/mmio_copy.h"
#include "pcimap/pci_bar_region.h"
#include "pcimap/region_factory.h"
#include "test_util.h"

namespace pcimirror {
namespace {

TEST(MmioCopy, EveryAlignmentAndLengthIsExact) {
  std::vector<uint8_t> src(4096 + 64), dst(4096 + 64), ref(4096 + 64);
  testing::fill_random(src.data(), src.size(), 9);
  for (bool wc : {false, true}) {
    for (size_t so : {0, 1, 3, 8, 15}) {
      for (size_t n : {0, 1, 2, 7, 15, 16, 17, 63, 64, 65, 1000, 4096}) {
        std::memset(dst.data(), 0xee, dst.size());
        ref = dst;
        std::memcpy(ref.data() + 5, src.data() + so, n);
        mmio_copy_from(dst.data() + 5, src.data() + so, n, wc);
        ASSERT_EQ(dst, ref) << "from so=" << so << " n=" << n << " wc=" << wc;
        std::memset(dst.data(), 0xee, dst.size());
        ref = dst;
        std::memcpy(ref.data() + so, src.data() + 3, n);
        mmio_copy_to(dst.data() + so, src.data() + 3, n);
        ASSERT_EQ(dst, ref) << "to so=" << so << " n=" << n;
      }
    }
  }
}

TEST(PciBar, MapErrorsNameDeviceAndRemedy) {
  auto busy = describe_map_error(EBUSY, "0000:03:00.0", 2, "nvidia");
  EXPECT_NE(busy.find("driver nvidia"), std::string::npos);
  EXPECT_NE(busy.find("/sys/bus/pci/devices/0000:03:00.0/driver/unbind"),
            std::string::npos);
  auto inval = describe_map_error(EINVAL, "0000:00:04.0", 4, "virtio-pci");
  EXPECT_NE(inval.find("driver virtio-pci"), std::string::npos);
  auto perm = describe_map_error(EPERM, "0000:03:00.0", 2, "");
  EXPECT_NE(perm.find("root"), std::string::npos);
  EXPECT_NE(perm.find("lockdown"), std::string::npos);
}

// Opens a spec and returns the error message ("" on success).
std::string open_error(const std::string& text) {
  auto spec = MemorySpec::parse(text);
  if (!spec.ok()) return spec.error().message;
  auto r = open_region(*spec);
  return r.ok() ? "" : r.error().message;
}

TEST(PciBar, SpecErrors) {
  EXPECT_NE(open_error("pci=0000:00:01.0").find("needs bar=N"), std::string::npos);
  EXPECT_NE(open_error("pci=0000:00:01.0,bar=6").find("out of range"), std::string::npos);
  EXPECT_NE(open_error("pci=zz,bar=0").find("not a PCI slot"), std::string::npos);
  EXPECT_NE(open_error("vendor=0x1af4,bar=0").find("device="), std::string::npos);
  EXPECT_NE(open_error("pci=0000:00:01.0,bar=0,size=1M").find("size="), std::string::npos);
  EXPECT_NE(open_error("pci=0000:00:01.0,file=/x,bar=0").find("more than one"),
            std::string::npos);
}

TEST(PciBar, ErrorsAgainstRealDevices) {
  auto devs = list_pci_devices();
  if (!devs.ok()) GTEST_SKIP() << "no PCI bus here: " << devs.error().what();
  EXPECT_NE(open_error("pci=0000:ff:1f.7,bar=0").find("no PCI device at 0000:ff:1f.7"),
            std::string::npos);
  EXPECT_NE(open_error("vendor=0xfffe,device=0x1,bar=0").find("no PCI device with ID"),
            std::string::npos);
  // Find a device with an unimplemented BAR and a memory BAR.
  for (const auto& d : *devs) {
    if (d.memory_bars.empty()) continue;
    const PciBarInfo& b = d.memory_bars[0];
    std::vector<bool> used(6);
    for (const auto& m : d.memory_bars) used[m.index] = true;
    for (unsigned i = 0; i < 6; ++i) {
      if (used[i]) continue;
      auto e = open_error("pci=" + d.slot + ",bar=" + std::to_string(i));
      EXPECT_TRUE(e.find("not implemented") != std::string::npos ||
                  e.find("I/O port") != std::string::npos)
          << e;
      break;
    }
    auto e = open_error("pci=" + d.slot + ",bar=" + std::to_string(b.index) +
                        ",window=0:" + std::to_string(b.size_bytes + 4096));
    EXPECT_NE(e.find("outside BAR"), std::string::npos) << e;
    e = open_error("pci=" + d.slot + ",bar=" + std::to_string(b.index) + ",window=100:4096");
    EXPECT_NE(e.find("multiple of 4096"), std::string::npos) << e;
    return;
  }
  GTEST_SKIP() << "no PCI device with a memory BAR here";
}

// DMA regions (issue 14): a regular file stands in for both channels, so
// what h2c writes at a card address c2h reads back there.
std::unique_ptr<Region> open_spec(const std::string& text) {
  auto spec = MemorySpec::parse(text);
  EXPECT_TRUE(spec.ok()) << text << ": " << spec.error().what();
  if (!spec.ok()) return nullptr;
  auto r = open_region(*spec);
  EXPECT_TRUE(r.ok()) << text << ": " << r.error().what();
  return r.ok() ? std::move(*r) : nullptr;
}

TEST(DmaRegion, SpecErrors) {
  testing::TempFile card(1 << 20);
  const std::string c = card.path();
  EXPECT_NE(open_error("c2h=" + c + ",size=4K")
                .find("needs both c2h=PATH and h2c=PATH"),
            std::string::npos);
  EXPECT_NE(
      open_error("xdma=/dev/xdma9,c2h=" + c + ",size=4K").find("not both"),
      std::string::npos);
  EXPECT_NE(open_error("c2h=" + c + ",h2c=" + c).find("needs size="),
            std::string::npos);
  EXPECT_NE(open_error("c2h=" + c + ",h2c=" + c + ",size=4K,dma_align=3")
                .find("power of two"),
            std::string::npos);
  EXPECT_NE(open_error("file=/x,size=4K,card_offset=4K")
                .find("apply to a DMA region"),
            std::string::npos);
  EXPECT_NE(open_error("file=/x,c2h=" + c + ",h2c=" + c + ",size=4K")
                .find("more than one"),
            std::string::npos);
  // The stand-in must hold card_offset + size.
  const auto short_msg =
      open_error("c2h=" + c + ",h2c=" + c + ",size=1M,card_offset=0x1000");
  EXPECT_NE(short_msg.find("less than card_offset + size"), std::string::npos)
      << short_msg;
  // A missing device names the path, the channel and the remedy.
  const auto missing = open_error("xdma=/dev/pcimirror-no-xdma,size=1M");
  EXPECT_NE(missing.find("/dev/pcimirror-no-xdma_c2h_0"), std::string::npos)
      << missing;
  EXPECT_NE(missing.find("card-to-host"), std::string::npos) << missing;
  EXPECT_NE(missing.find("modprobe xdma"), std::string::npos) << missing;
  EXPECT_NE(missing.find("pcimirror devices"), std::string::npos) << missing;
  auto spec = MemorySpec::parse("xdma=/dev/pcimirror-no-xdma,size=1M");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(open_region(*spec).error().code, ENOENT);
}

TEST(DmaRegion, CopiesAtTheCardOffsetInEveryAlignment) {
  // Card memory of 1 MiB + 3 pages; the region starts at an odd card
  // address, so aligned and misaligned buffers both occur.
  constexpr uint64_t kCardOffset = 0x2001, kSize = 1 << 20;
  testing::TempFile card(kCardOffset + kSize + 8192);
  auto r = open_spec("c2h=" + card.path() + ",h2c=" + card.path() +
                     ",card_offset=0x2001,size=1M");
  ASSERT_TRUE(r);
  auto* dma = dynamic_cast<DmaRegion*>(r.get());
  ASSERT_NE(dma, nullptr);
  EXPECT_EQ(r->kind(), RegionKind::kDma);
  EXPECT_EQ(r->base(), nullptr);
  EXPECT_FALSE(r->pages_pinnable());
  EXPECT_EQ(r->size_bytes(), kSize);
  EXPECT_EQ(dma->align_bytes(), DmaRegion::kDefaultAlignBytes);
  // Page-aligned buffers, offset so that buffer + k meets or misses the
  // card address's low bits.
  std::vector<std::byte> src(3 << 20), back(3 << 20);
  testing::fill_random(src.data(), src.size(), 77);
  auto* src_page = reinterpret_cast<std::byte*>(
      (reinterpret_cast<uintptr_t>(src.data()) + 4095) / 4096 * 4096);
  auto* back_page = reinterpret_cast<std::byte*>(
      (reinterpret_cast<uintptr_t>(back.data()) + 4095) / 4096 * 4096);
  for (uint64_t off : {0ull, 1ull, 4095ull, 4096ull, 12345ull}) {
    for (size_t n : {size_t{1}, size_t{7}, size_t{4096}, size_t{70000},
                     size_t{(1 << 20) + 5}}) {
      if (off + n > kSize) continue;
      for (uint64_t shift : {uint64_t{0}, (kCardOffset + off) % 4096}) {
        const uint64_t staged = dma->staged_bytes();
        std::byte* in = src_page + shift;
        ASSERT_TRUE(r->copy_to(off, in, n).ok());
        std::byte* out = back_page + shift;
        std::memset(out, 0, n);
        ASSERT_TRUE(r->copy_from(off, out, n).ok());
        ASSERT_EQ(std::memcmp(in, out, n), 0) << "off=" << off << " n=" << n;
        // The bytes are at card address card_offset + off.
        const auto file = testing::read_file(card.path(), kCardOffset + off, n);
        ASSERT_EQ(std::memcmp(file.data(), in, n), 0) << "off=" << off;
        // Matching low bits go straight to the device; others are staged.
        const bool aligned = (shift - (kCardOffset + off)) % 4096 == 0;
        EXPECT_EQ(dma->staged_bytes() - staged, aligned ? 0 : 2 * n)
            << "off=" << off << " n=" << n << " shift=" << shift;
      }
    }
  }
}

TEST(DmaRegion, TransferErrorsNameTheDeviceAndCardAddress) {
  // Real character devices: /dev/zero reads zeros, /dev/full refuses
  // writes with ENOSPC, as a board's h2c channel refuses with EIO.
  struct stat st {};
  if (::stat("/dev/full", &st) != 0 || !S_ISCHR(st.st_mode))
    GTEST_SKIP() << "no /dev/full here";
  auto r =
      open_spec("c2h=/dev/zero,h2c=/dev/full,card_offset=0x10000,size=64K");
  ASSERT_TRUE(r);
  std::vector<std::byte> buf(8192, std::byte{1});
  ASSERT_TRUE(r->copy_from(100, buf.data(), buf.size()).ok());
  EXPECT_EQ(buf[0], std::byte{0});
  EXPECT_EQ(buf[8191], std::byte{0});
  Status w = r->copy_to(0x20, buf.data(), 4096);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, ENOSPC);
  const std::string m = w.error().message;
  EXPECT_NE(m.find("DMA write to /dev/full"), std::string::npos) << m;
  EXPECT_NE(m.find("card address 0x10020"), std::string::npos) << m;
  EXPECT_NE(m.find("retry"), std::string::npos) << m;
}

TEST(DmaRegion, FindsXdmaChannelPairs) {
  char tmpl[] = "/tmp/pcimirror-xdma.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  for (const char* n :
       {"xdma0_c2h_0", "xdma0_h2c_0", "xdma0_c2h_1", "xdma0_h2c_1",
        "xdma1_c2h_0", "xdma0_user", "xdma0_c2h_x", "xdma2_h2c_0"})
    std::ofstream(dir + "/" + n).put('x');
  const auto ch = find_xdma_channels(dir);
  ASSERT_EQ(ch.size(), 2u);  // xdma1 lacks h2c, xdma2 lacks c2h
  EXPECT_EQ(ch[0].prefix, dir + "/xdma0");
  EXPECT_EQ(ch[0].channel, 0u);
  EXPECT_EQ(ch[0].c2h, dir + "/xdma0_c2h_0");
  EXPECT_EQ(ch[0].h2c, dir + "/xdma0_h2c_0");
  EXPECT_EQ(ch[1].channel, 1u);
  EXPECT_TRUE(find_xdma_channels(dir + "/none").empty());
  std::string cmd = "rm -rf '" + dir + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
}

}  // namespace
}  // namespace pcimirror

#include "fs/mirror.h"

namespace pcimirror {
namespace {

// A Region that reports PCI identity; the identity rule is pure logic, and
// the real BAR is exercised by the VM test (tests/vm).
class IdentityRegion final : public Region {
 public:
  IdentityRegion(uint16_t v, uint16_t d, uint64_t bar) : v_(v), d_(d), bar_(bar) {}
  const std::string& name() const override { return name_; }
  RegionKind kind() const override { return RegionKind::kPciBar; }
  uint64_t size_bytes() const override { return 4096; }
  std::byte* base() const override { return nullptr; }
  bool pages_pinnable() const override { return false; }
  bool write_combining() const override { return false; }
  uint16_t pci_vendor_id() const override { return v_; }
  uint16_t pci_device_id() const override { return d_; }
  uint64_t bar_bytes() const override { return bar_; }

 private:
  std::string name_ = "pci:test";
  uint16_t v_, d_;
  uint64_t bar_;
};

TEST(RegionIdentity, RefusesOtherDeviceOrSmallerBarUnlessOverridden) {
  Superblock sb;
  sb.pci_vendor_id = 0x1af4;
  sb.pci_device_id = 0x1110;
  sb.pci_bar_bytes = 64 << 20;
  EXPECT_TRUE(check_region_identity(sb, IdentityRegion(0x1af4, 0x1110, 64 << 20), false).ok());
  EXPECT_TRUE(check_region_identity(sb, IdentityRegion(0x1af4, 0x1110, 128 << 20), false).ok());
  auto other = check_region_identity(sb, IdentityRegion(0x10de, 0x2204, 64 << 20), false);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error().message.find("10de:2204"), std::string::npos);
  EXPECT_NE(other.error().message.find("1af4:1110"), std::string::npos);
  EXPECT_NE(other.error().message.find("ignore_device_id"), std::string::npos);
  auto small = check_region_identity(sb, IdentityRegion(0x1af4, 0x1110, 32 << 20), false);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.error().message.find("smaller"), std::string::npos);
  EXPECT_TRUE(check_region_identity(sb, IdentityRegion(0x10de, 0x2204, 1), true).ok());
  // Emulated regions may always stand in (restore a BAR's mirror to a file).
  EXPECT_TRUE(check_region_identity(sb, IdentityRegion(0, 0, 0), false).ok());
}

}  // namespace
}  // namespace pcimirror
