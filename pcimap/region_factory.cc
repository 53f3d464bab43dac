#include "pcimap/region_factory.h"

#include <algorithm>
#include <array>

#include "io/units.h"
#include "pcimap/dma_region.h"
#include "pcimap/file_region.h"
#include "pcimap/pci_bar_region.h"

namespace pcimirror {
namespace {
constexpr std::array<const char*, 14> kKeys = {
    "file", "memfd",  "size", "pci", "vendor", "device",      "index",
    "bar",  "window", "c2h",  "h2c", "xdma",   "card_offset", "dma_align"};
}

bool MemorySpec::is_memory_key(const std::string& key) {
  return std::find(kKeys.begin(), kKeys.end(), key) != kKeys.end();
}

Result<MemorySpec> MemorySpec::parse(const std::string& text) {
  MemorySpec spec;
  for (const auto& [key, value] : split_key_values(text)) {
    if (!is_memory_key(key))
      return make_error(EINVAL, "memory spec '" + text + "': unknown key '" +
                                    key +
                                    "'; known keys are file, memfd, size, "
                                    "pci, vendor, device, index, bar, window, "
                                    "c2h, h2c, xdma, card_offset, dma_align");
    if (spec.has(key))
      return make_error(EINVAL,
                        "memory spec '" + text + "': key '" + key + "' given twice");
    if (value.empty())
      return make_error(EINVAL,
                        "memory spec '" + text + "': key '" + key + "' needs a value");
    spec.kv_.emplace_back(key, value);
  }
  const bool dma = spec.has("c2h") || spec.has("h2c") || spec.has("xdma");
  const int sources = spec.has("file") + spec.has("memfd") + spec.has("pci") +
                      spec.has("vendor") + dma;
  if (sources > 1)
    return make_error(EINVAL, "memory spec '" + text +
                                  "' names more than one source; give one of "
                                  "file=, memfd=, pci=, vendor=, c2h=/h2c= "
                                  "or xdma=");
  if (sources == 0)
    return make_error(EINVAL, "memory spec '" + text +
                                  "' names no memory; give file=PATH,size=N, "
                                  "pci=SLOT,bar=N or xdma=/dev/xdma0,size=N");
  if (!dma && (spec.has("card_offset") || spec.has("dma_align")))
    return make_error(EINVAL, "memory spec '" + text +
                                  "': card_offset= and dma_align= apply to a "
                                  "DMA region (c2h=/h2c= or xdma=)");
  return spec;
}

std::string MemorySpec::get(const std::string& key) const {
  for (const auto& [k, v] : kv_)
    if (k == key) return v;
  return {};
}
bool MemorySpec::has(const std::string& key) const {
  for (const auto& kv : kv_)
    if (kv.first == key) return true;
  return false;
}
void MemorySpec::set(const std::string& key, const std::string& value) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  kv_.emplace_back(key, value);
}
std::string MemorySpec::to_string() const {
  std::string s;
  for (const auto& [k, v] : kv_) {
    if (!s.empty()) s += ',';
    s += k + '=' + v;
  }
  return s;
}

Result<std::unique_ptr<Region>> open_region(const MemorySpec& spec) {
  uint64_t size = 0;
  if (spec.has("size")) {
    PCIM_ASSIGN_OR_RETURN(size, parse_size_bytes(spec.get("size"), "size="));
  }
  if (spec.has("file")) {
    PCIM_ASSIGN_OR_RETURN(auto r, FileRegion::open_file(spec.get("file"), size));
    return std::unique_ptr<Region>(std::move(r));
  }
  if (spec.has("memfd")) {
    PCIM_ASSIGN_OR_RETURN(auto r, FileRegion::create_memfd(spec.get("memfd"), size));
    return std::unique_ptr<Region>(std::move(r));
  }
  if (spec.has("c2h") || spec.has("h2c") || spec.has("xdma")) {
    PCIM_ASSIGN_OR_RETURN(auto r, DmaRegion::open(spec));
    return std::unique_ptr<Region>(std::move(r));
  }
  if (spec.has("size"))
    return make_error(EINVAL, "memory spec '" + spec.to_string() +
                                  "': size= applies to file= and memfd=; a "
                                  "BAR's size comes from the device (narrow "
                                  "it with window=OFFSET:LENGTH)");
  PCIM_ASSIGN_OR_RETURN(auto r, PciBarRegion::open(spec));
  return std::unique_ptr<Region>(std::move(r));
}

}  // namespace pcimirror
