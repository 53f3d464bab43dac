// Memory specs: a comma-separated key=value list naming a memory source, with
// the same keys as the mount options (docs/FORMAT.md records it verbatim in
// the superblock):
//   file=/dev/shm/pcimirror.ram,size=256M   emulated region on a file
//   memfd=NAME,size=256M                     anonymous emulated region
//   pci=0000:03:00.0,bar=2[,window=OFF:LEN]  a PCI BAR (issue 3)
//   vendor=0x1af4,device=0x1110[,index=N],bar=2
//   c2h=PATH,h2c=PATH,size=N[,card_offset=N][,dma_align=N]   DMA (issue 14)
//   xdma=/dev/xdma0,size=N[,...]            the same for channel 0's pair
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/result.h"
#include "pcimap/region.h"

namespace pcimirror {

class MemorySpec {
 public:
  /// Parses "k=v,k=v". Errors: EINVAL naming an unknown key, a key given
  /// twice, or a missing source (file=, memfd=, pci=, vendor=/device=,
  /// c2h=/h2c= or xdma=), or more than one.
  static Result<MemorySpec> parse(const std::string& text);
  /// True for the keys that belong to a memory spec.
  static bool is_memory_key(const std::string& key);

  /// Value of `key`, or "" when absent.
  std::string get(const std::string& key) const;
  bool has(const std::string& key) const;
  void set(const std::string& key, const std::string& value);
  /// Canonical text, keys in the order given.
  std::string to_string() const;

 private:
  std::vector<std::pair<std::string, std::string>> kv_;
};

/// Opens the region a spec names. Errors keep the errno of the failing step
/// and name the source.
Result<std::unique_ptr<Region>> open_region(const MemorySpec& spec);

}  // namespace pcimirror
