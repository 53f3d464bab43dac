// A PCI BAR mapped through libpciaccess (sysfs resourceN, or resourceN_wc
// for prefetchable BARs). Such a mapping is VM_IO|VM_PFNMAP: its pages
// cannot be pinned, so O_DIRECT and io_uring_register_buffers from it fail
// with EFAULT and every mirror goes through the bounce pool.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/result.h"
#include "pcimap/region.h"

namespace pcimirror {

class MemorySpec;
class PciSystem;

/// One memory BAR as `pcimirror devices` lists it.
struct PciBarInfo {
  unsigned index = 0;
  uint64_t size_bytes = 0;
  bool prefetchable = false;
  bool is_64 = false;
};

/// One PCI device and its memory BARs.
struct PciDeviceInfo {
  std::string slot;  ///< "0000:03:00.0"
  uint16_t vendor_id = 0, device_id = 0;
  std::string vendor_name, device_name;  ///< from pci.ids, may be empty
  std::string driver;                    ///< bound kernel driver, or ""
  std::vector<PciBarInfo> memory_bars;
  unsigned io_bars = 0;
};

/// Lists every PCI device with its memory BARs. Errors: the errno of
/// pci_system_init (e.g. ENOENT without /sys/bus/pci).
Result<std::vector<PciDeviceInfo>> list_pci_devices();

class PciBarRegion final : public Region {
 public:
  /// Opens the BAR a spec names: `pci=[DOMAIN:]BUS:DEV.FN` or
  /// `vendor=0xVVVV,device=0xDDDD[,index=N]`, then `bar=N` and optionally
  /// `window=OFFSET:LENGTH` (OFFSET a multiple of 4096). Maps it writable,
  /// write-combining when the BAR is prefetchable, uncached otherwise.
  /// Errors, each naming the device and the remedy: ENODEV (no such
  /// device), EINVAL (BAR index out of range, I/O BAR, unimplemented BAR,
  /// window outside the BAR), EPERM/EACCES (not root, kernel lockdown),
  /// EBUSY or EINVAL (a driver holds the region under
  /// CONFIG_IO_STRICT_DEVMEM; the kernel's sysfs mmap answers EINVAL).
  static Result<std::unique_ptr<PciBarRegion>> open(const MemorySpec& spec);
  ~PciBarRegion() override;

  const std::string& name() const override { return name_; }
  RegionKind kind() const override { return RegionKind::kPciBar; }
  uint64_t size_bytes() const override { return size_bytes_; }
  std::byte* base() const override { return base_; }
  bool pages_pinnable() const override { return false; }
  bool write_combining() const override { return write_combining_; }
  uint16_t pci_vendor_id() const override { return vendor_id_; }
  uint16_t pci_device_id() const override { return device_id_; }
  uint64_t bar_bytes() const override { return bar_bytes_; }
  Status check_device() const override;
  /// MMIO copies; always succeed (a device that stopped answering reads
  /// all ones, which check_device() and the canary catch).
  Status copy_from(uint64_t offset_bytes, void* dst,
                   size_t length_bytes) const override;
  Status copy_to(uint64_t offset_bytes, const void* src,
                 size_t length_bytes) override;

 private:
  PciBarRegion() = default;
  std::shared_ptr<PciSystem> system_;
  void* device_ = nullptr;  // struct pci_device*
  std::string name_;
  std::string slot_;  // "0000:03:00.0", for messages
  bool is_vf_ = false;  // an SR-IOV virtual function (sysfs physfn)
  std::byte* base_ = nullptr;
  uint64_t size_bytes_ = 0;
  uint64_t bar_bytes_ = 0;
  bool write_combining_ = false;
  uint16_t vendor_id_ = 0, device_id_ = 0;
};

/// The message for a failed BAR mapping (positive errno from libpciaccess),
/// naming the device and what to do. Exposed for tests.
std::string describe_map_error(int err, const std::string& slot, unsigned bar,
                               const std::string& driver);

}  // namespace pcimirror
