// MMIO copies (on ordinary memory: the access pattern is what differs, not
// the result) and libpciaccess error paths against this machine's real PCI
// devices. Nothing here maps a host BAR: every case fails before mapping.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

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
