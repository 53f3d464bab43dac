#include "pcimap/pci_bar_region.h"

#include <pciaccess.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "io/mutex.h"
#include "io/units.h"
#include "pcimap/mmio_copy.h"
#include "pcimap/region_factory.h"

namespace pcimirror {

// Owner of libpciaccess's global state: pci_system_init() once for all
// users, pci_system_cleanup() when the last one goes.
class PciSystem {
 public:
  static Result<std::shared_ptr<PciSystem>> acquire() {
    static Mutex mu;
    static std::weak_ptr<PciSystem> current;
    MutexLock lock(mu);
    if (auto s = current.lock()) return s;
    int err = pci_system_init();  // positive errno
    if (err != 0)
      return sys_error(err, "cannot scan PCI devices (is /sys/bus/pci "
                            "mounted?)");
    auto s = std::shared_ptr<PciSystem>(new PciSystem());
    current = s;
    return s;
  }
  ~PciSystem() { pci_system_cleanup(); }

 private:
  PciSystem() = default;
};

namespace {

std::string slot_of(const pci_device* d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", d->domain, d->bus,
                d->dev, d->func);
  return buf;
}

std::string driver_of(const std::string& slot) {
  std::error_code ec;
  auto link = std::filesystem::read_symlink(
      "/sys/bus/pci/devices/" + slot + "/driver", ec);
  return ec ? std::string() : link.filename().string();
}

// "[DOMAIN:]BUS:DEV.FN" (hex).
bool parse_slot(const std::string& s, pci_slot_match& m) {
  unsigned dom = 0, bus, dev, fn;
  char tail;
  if (std::sscanf(s.c_str(), "%x:%x:%x.%x%c", &dom, &bus, &dev, &fn, &tail) == 4) {
  } else if (std::sscanf(s.c_str(), "%x:%x.%x%c", &bus, &dev, &fn, &tail) == 3) {
    dom = 0;
  } else {
    return false;
  }
  if (bus > 0xff || dev > 0x1f || fn > 7) return false;
  m = pci_slot_match{dom, bus, dev, fn, 0};
  return true;
}

}  // namespace

std::string describe_map_error(int err, const std::string& slot, unsigned bar,
                               const std::string& driver) {
  std::string what = "cannot map BAR " + std::to_string(bar) + " of PCI device " + slot;
  // A region a driver claimed exclusively under CONFIG_IO_STRICT_DEVMEM:
  // pci_mmap_resource() (drivers/pci/pci-sysfs.c) answers -EINVAL for it,
  // other paths -EBUSY.
  if (err == EBUSY || (err == EINVAL && !driver.empty()))
    return what + ": the region is held exclusively by " +
           (driver.empty() ? std::string("a kernel driver") : "driver " + driver) +
           " (CONFIG_IO_STRICT_DEVMEM); unbind it first: echo " + slot +
           " > /sys/bus/pci/devices/" + slot + "/driver/unbind";
  switch (err) {
    case EPERM:
    case EACCES:
      return what + ": permission denied; run as root, and check kernel "
                    "lockdown (/sys/kernel/security/lockdown), which forbids "
                    "mapping PCI BARs from user space";
    case ENOENT:
      return what + ": its sysfs resource file is missing";
    default:
      return what;
  }
}

Result<std::vector<PciDeviceInfo>> list_pci_devices() {
  PCIM_ASSIGN_OR_RETURN(auto sys, PciSystem::acquire());
  pci_slot_match all{PCI_MATCH_ANY, PCI_MATCH_ANY, PCI_MATCH_ANY, PCI_MATCH_ANY, 0};
  pci_device_iterator* it = pci_slot_match_iterator_create(&all);
  std::vector<PciDeviceInfo> out;
  while (pci_device* d = pci_device_next(it)) {
    pci_device_probe(d);
    PciDeviceInfo info;
    info.slot = slot_of(d);
    info.vendor_id = d->vendor_id;
    info.device_id = d->device_id;
    if (const char* n = pci_device_get_vendor_name(d)) info.vendor_name = n;
    if (const char* n = pci_device_get_device_name(d)) info.device_name = n;
    info.driver = driver_of(info.slot);
    for (unsigned b = 0; b < 6; ++b) {
      const pci_mem_region& r = d->regions[b];
      if (r.size == 0) continue;
      if (r.is_IO) {
        ++info.io_bars;
        continue;
      }
      info.memory_bars.push_back({b, r.size, r.is_prefetchable != 0, r.is_64 != 0});
    }
    out.push_back(std::move(info));
  }
  pci_iterator_destroy(it);
  return out;
}

Result<std::unique_ptr<PciBarRegion>> PciBarRegion::open(const MemorySpec& spec) {
  if (!spec.has("bar"))
    return make_error(EINVAL, "memory spec '" + spec.to_string() +
                                  "' needs bar=N; `pcimirror devices` lists "
                                  "the memory BARs");
  PCIM_ASSIGN_OR_RETURN(uint64_t bar, parse_uint(spec.get("bar"), "bar="));
  if (bar > 5)
    return make_error(EINVAL, "bar=" + spec.get("bar") +
                                  " is out of range: a PCI device has BARs 0 to 5");
  PCIM_ASSIGN_OR_RETURN(auto sys, PciSystem::acquire());

  pci_device* dev = nullptr;
  std::string wanted;
  if (spec.has("pci")) {
    pci_slot_match m{};
    if (!parse_slot(spec.get("pci"), m))
      return make_error(EINVAL, "pci=" + spec.get("pci") +
                                    " is not a PCI slot; use DOMAIN:BUS:DEV.FN, "
                                    "e.g. pci=0000:03:00.0");
    wanted = "at " + spec.get("pci");
    pci_device_iterator* it = pci_slot_match_iterator_create(&m);
    dev = pci_device_next(it);
    pci_iterator_destroy(it);
  } else {
    if (!spec.has("device"))
      return make_error(EINVAL, "vendor= needs device= too, e.g. "
                                "vendor=0x1af4,device=0x1110");
    PCIM_ASSIGN_OR_RETURN(uint64_t vendor, parse_uint(spec.get("vendor"), "vendor="));
    PCIM_ASSIGN_OR_RETURN(uint64_t device, parse_uint(spec.get("device"), "device="));
    uint64_t index = 0;
    if (spec.has("index")) {
      PCIM_ASSIGN_OR_RETURN(index, parse_uint(spec.get("index"), "index="));
    }
    if (vendor > 0xffff || device > 0xffff)
      return make_error(EINVAL, "vendor= and device= are 16-bit IDs");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04x:%04x (index %llu)",
                  static_cast<unsigned>(vendor), static_cast<unsigned>(device),
                  static_cast<unsigned long long>(index));
    wanted = std::string("with ID ") + buf;
    pci_id_match m{static_cast<uint32_t>(vendor), static_cast<uint32_t>(device),
                   PCI_MATCH_ANY, PCI_MATCH_ANY, 0, 0, 0};
    pci_device_iterator* it = pci_id_match_iterator_create(&m);
    for (uint64_t i = 0; (dev = pci_device_next(it)) && i < index; ++i) {
    }
    pci_iterator_destroy(it);
  }
  if (!dev)
    return make_error(ENODEV, "no PCI device " + wanted +
                                  "; `pcimirror devices` lists the devices");
  if (int err = pci_device_probe(dev); err != 0)
    return sys_error(err, "cannot probe PCI device " + slot_of(dev));
  const std::string slot = slot_of(dev);
  const pci_mem_region& r = dev->regions[bar];
  const std::string bar_name = "BAR " + std::to_string(bar) + " of PCI device " + slot;
  if (r.size == 0)
    return make_error(EINVAL, bar_name + " is not implemented; `pcimirror "
                                         "devices` lists its memory BARs");
  if (r.is_IO)
    return make_error(EINVAL, bar_name + " is I/O port space, not memory; "
                                         "choose a memory BAR (`pcimirror devices`)");
  uint64_t off = 0, len = r.size;
  if (spec.has("window")) {
    const std::string w = spec.get("window");
    size_t colon = w.find(':');
    if (colon == std::string::npos)
      return make_error(EINVAL, "window=" + w + ": use window=OFFSET:LENGTH");
    PCIM_ASSIGN_OR_RETURN(off, parse_size_bytes(w.substr(0, colon), "window= offset"));
    PCIM_ASSIGN_OR_RETURN(len, parse_size_bytes(w.substr(colon + 1), "window= length"));
    if (len == 0 || off > r.size || len > r.size - off)
      return make_error(EINVAL, "window=" + w + " lies outside " + bar_name +
                                    " (" + std::to_string(r.size) + " bytes)");
    if (off % 4096)
      return make_error(EINVAL, "window=" + w + ": the offset must be a "
                                                "multiple of 4096 (a page)");
  }
  const bool wc = r.is_prefetchable;
  void* addr = nullptr;
  unsigned flags = PCI_DEV_MAP_FLAG_WRITABLE | (wc ? PCI_DEV_MAP_FLAG_WRITE_COMBINE : 0);
  int err = pci_device_map_range(dev, r.base_addr + off, len, flags, &addr);
  if (err != 0) {
    // The described cases carry their whole story; others add strerror.
    const std::string generic = "cannot map BAR " + std::to_string(bar) +
                                " of PCI device " + slot;
    std::string msg = describe_map_error(err, slot, static_cast<unsigned>(bar),
                                         driver_of(slot));
    return msg == generic ? sys_error(err, msg) : make_error(err, msg);
  }
  auto region = std::unique_ptr<PciBarRegion>(new PciBarRegion());
  region->system_ = std::move(sys);
  region->device_ = dev;
  region->base_ = static_cast<std::byte*>(addr);
  region->size_bytes_ = len;
  region->bar_bytes_ = r.size;
  region->write_combining_ = wc;
  region->vendor_id_ = dev->vendor_id;
  region->device_id_ = dev->device_id;
  region->slot_ = slot;
  std::error_code vf_ec;
  region->is_vf_ = std::filesystem::exists(
      "/sys/bus/pci/devices/" + slot + "/physfn", vf_ec);
  region->name_ = "pci:" + slot + "/bar" + std::to_string(bar) +
                  (spec.has("window") ? "+" + std::to_string(off) : "") +
                  (wc ? " (write-combining)" : " (uncached)");
  return region;
}

PciBarRegion::~PciBarRegion() {
  if (base_)
    pci_device_unmap_range(static_cast<pci_device*>(device_), base_, size_bytes_);
}

Status PciBarRegion::check_device() const {
  auto* dev = static_cast<pci_device*>(device_);
  const std::string who = "PCI device " + slot_ + " (" + name_ + ")";
  uint16_t ids[2] = {0, 0}, command = 0;
  // PCI config space: vendor ID at 0x00, device ID at 0x02, COMMAND at 0x04
  // (PCI Local Bus Specification 3.0, §6.2.2). An SR-IOV virtual function
  // reads 0xffff as its IDs and 0 as COMMAND's memory bit by design (PCIe
  // Base Specification, SR-IOV §9.3.4.1; memory decoding is the physical
  // function's VF MSE bit): for a VF only the read itself is checked.
  for (int i = 0; i < (is_vf_ ? 1 : 3); ++i) {
    uint16_t* out = i < 2 ? &ids[i] : &command;
    const int err = pci_device_cfg_read_u16(dev, out, i * 2);  // positive errno
    if (err != 0)
      return make_error(EIO, who +
                                 " does not answer: reading its config space "
                                 "failed (" +
                                 std::strerror(err) +
                                 "); it was removed or lost its link");
  }
  if (is_vf_) return {};
  char buf[256];  // the COMMAND message is 165 bytes with its 12-byte slot
  if (ids[0] == 0xffff && ids[1] == 0xffff) {
    return make_error(EIO, who +
                               " is gone: its vendor and device ID read "
                               "0xffff (surprise removal or a dead link)");
  }
  if (ids[0] != vendor_id_ || ids[1] != device_id_) {
    std::snprintf(buf, sizeof buf,
                  " changed identity: it reads %04x:%04x, it was %04x:%04x "
                  "when pcimirror opened it",
                  ids[0], ids[1], vendor_id_, device_id_);
    return make_error(EIO, who + buf);
  }
  if (!(command & 0x2)) {
    std::snprintf(buf, sizeof buf,
                  " has memory decoding off (COMMAND 0x%04x, bit 1 clear): its "
                  "BAR reads return no memory; enable it (setpci -s %s "
                  "COMMAND=0x2:0x2) once the device is healthy",
                  command, slot_.c_str());
    return make_error(EIO, who + buf);
  }
  return {};
}

Status PciBarRegion::copy_from(uint64_t offset_bytes, void* dst,
                               size_t length_bytes) const {
  mmio_copy_from(dst, base_ + offset_bytes, length_bytes, write_combining_);
  return {};
}

Status PciBarRegion::copy_to(uint64_t offset_bytes, const void* src,
                             size_t length_bytes) {
  mmio_copy_to(base_ + offset_bytes, src, length_bytes);
  return {};
}

}  // namespace pcimirror
