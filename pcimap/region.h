// A Region is a window of device memory: a PCI BAR mapped into this process
// (PciBarRegion), an emulated stand-in (FileRegion), or card memory behind a
// DMA engine's character devices (DmaRegion), which has no mapping at all.
// Each kind brings its own copy engine behind copy_from/copy_to. This is the
// only pcimap header that fs/ needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "io/result.h"

#if defined(__SANITIZE_THREAD__)
#define PCIMIRROR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PCIMIRROR_TSAN 1
#endif
#endif
#ifdef PCIMIRROR_TSAN
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
#endif

namespace pcimirror {

/// In a ThreadSanitizer build, hides the memory accesses of one scope from
/// TSan; nothing otherwise. Device memory is written by the board behind
/// our back and read through the mount without a lock by design
/// (docs/DESIGN.md, "FUSE"; tests/tsan.supp), so copies into and out of
/// region memory are exempt. Ignored, not suppressed: every racing word of
/// a suppressed race still costs TSan a stack restore under a global lock,
/// which stalls a daemon copying megabytes for minutes.
class TsanIgnoreScope {
 public:
#ifdef PCIMIRROR_TSAN
  TsanIgnoreScope() { __tsan_ignore_thread_begin(); }
  ~TsanIgnoreScope() { __tsan_ignore_thread_end(); }
#else
  // User-provided, so a scope object is not an unused variable.
  TsanIgnoreScope() {}
  ~TsanIgnoreScope() {}
#endif
  TsanIgnoreScope(const TsanIgnoreScope&) = delete;
  TsanIgnoreScope& operator=(const TsanIgnoreScope&) = delete;
};

/// How a region's bytes are reached, and so which copy engine copy_from and
/// copy_to use: memcpy on mapped memory (kFile), MMIO streaming loads and
/// write-combining stores (kPciBar), or synchronous DMA through character
/// devices (kDma, no mapping: base() is null).
enum class RegionKind { kFile, kPciBar, kDma };

class Region {
 public:
  virtual ~Region() = default;

  /// Human-readable identity for messages, e.g. "file:/dev/shm/ram" or
  /// "pci:0000:03:00.0/bar2".
  virtual const std::string& name() const = 0;
  /// The region's kind: which copy engine it uses.
  virtual RegionKind kind() const = 0;
  /// Size in bytes.
  virtual uint64_t size_bytes() const = 0;
  /// Start of the mapping (page-aligned), or nullptr for a region without
  /// one (kind() kDma). Only for regions with pages_pinnable() true (the
  /// zero-copy paths) and for tests; everything else goes through
  /// copy_from/copy_to.
  virtual std::byte* base() const = 0;
  /// True when the kernel can pin the pages (get_user_pages), so O_DIRECT
  /// and io_uring can use them directly. False for VM_IO|VM_PFNMAP mappings
  /// of a BAR (sysfs resourceN), where O_DIRECT fails with EFAULT.
  virtual bool pages_pinnable() const = 0;
  /// True for write-combining mappings (prefetchable BARs).
  virtual bool write_combining() const = 0;
  /// Identity recorded at format time and checked at mount: PCI vendor and
  /// device IDs, 0 for emulated regions.
  virtual uint16_t pci_vendor_id() const { return 0; }
  virtual uint16_t pci_device_id() const { return 0; }
  /// Size of the whole BAR behind the region, 0 for emulated regions.
  virtual uint64_t bar_bytes() const { return 0; }

  /// Device liveness (docs/DESIGN.md, "Never mirror garbage"): for a BAR,
  /// reads the device's vendor and device ID and its COMMAND register from
  /// PCI config space (libpciaccess; PCI Local Bus Spec 3.0 §6.2.2) and
  /// fails with EIO when the IDs read 0xFFFF (the device is gone: a read
  /// the device does not answer completes as all ones), differ from the
  /// ones at open, or memory decoding (COMMAND bit 1) is off, so that BAR
  /// reads return no memory. The config read's own errno (ENOENT, ENODEV
  /// after a hot-unplug) comes back as EIO too. The message names the
  /// device and what it read. Always succeeds for emulated regions.
  /// Thread-safe; a few config-space reads (microseconds).
  virtual Status check_device() const { return {}; }

  /// Copies `length_bytes` at region offset `offset_bytes` into `dst`, any
  /// alignment. The caller checks bounds with contains(). MMIO-aware for
  /// BARs; a DMA transfer for kDma, which can fail: EIO, ETIMEDOUT, ENODEV
  /// or EINVAL from the driver, with a message naming the device, the card
  /// address and a remedy. `dst` then holds undefined bytes. Mapped regions
  /// always succeed. Thread-safe (concurrent copies of any ranges).
  [[nodiscard]] virtual Status copy_from(uint64_t offset_bytes, void* dst,
                                         size_t length_bytes) const {
    TsanIgnoreScope racy_by_design;
    std::memcpy(dst, base() + offset_bytes, length_bytes);
    return {};
  }
  /// Copies `length_bytes` from `src` into the region at `offset_bytes`.
  /// Errors as copy_from; after an error the range holds undefined bytes.
  [[nodiscard]] virtual Status copy_to(uint64_t offset_bytes, const void* src,
                                       size_t length_bytes) {
    TsanIgnoreScope racy_by_design;
    std::memcpy(base() + offset_bytes, src, length_bytes);
    return {};
  }

  /// Best effort, before a large copy into [offset_bytes, +length_bytes):
  /// maps the window's pages writable in one call, so that the copy does not
  /// take a page fault per 4 KiB page (a fresh mapping of a 1 GiB memory
  /// file faults 262,144 times). Contents are unchanged. No-op by default (a
  /// BAR is mapped whole by mmap(2) of sysfs resourceN).
  virtual void prefault_for_write(uint64_t offset_bytes,
                                  uint64_t length_bytes) {
    (void)offset_bytes;
    (void)length_bytes;
  }

  /// Best effort, at mount (docs/DESIGN.md, "The copy stage"): maps the
  /// window's pages readable in one call, so that the first mirror of a
  /// slice does not take a page fault per 4 KiB page of a memory file that
  /// no process has touched through this mapping yet (the first sync of
  /// 1 GiB took 2.4 s where later ones took 1.07 s). Reads only: nothing
  /// is dirtied, so a file on a disk filesystem is not written back.
  /// Contents are unchanged. No-op by default (a BAR is MMIO: no page
  /// faults to save).
  virtual void prefault_for_read(uint64_t offset_bytes, uint64_t length_bytes) {
    (void)offset_bytes;
    (void)length_bytes;
  }

  /// True when [offset_bytes, offset_bytes + length_bytes) lies inside the
  /// region, without overflow.
  bool contains(uint64_t offset_bytes, uint64_t length_bytes) const {
    return offset_bytes <= size_bytes() &&
           length_bytes <= size_bytes() - offset_bytes;
  }
};

}  // namespace pcimirror
