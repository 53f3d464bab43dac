// pcimirror devices [--json]: PCI devices and their memory BARs, the way
// `lspci -v` shows them, with the memory spec that selects each BAR; then
// the XDMA channel pairs in /dev (/dev/xdmaN_c2h_K with /dev/xdmaN_h2c_K)
// with the memory spec of a DMA region on each.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "io/units.h"
#include "pcimap/dma_region.h"
#include "pcimap/pci_bar_region.h"

namespace pcimirror::cli {
namespace {

// The memory spec of a DMA region on one channel pair; SIZE is the user's
// to fill in (the bytes of card memory to mirror).
std::string xdma_spec(const XdmaChannel& c) {
  if (c.channel == 0) return "xdma=" + c.prefix + ",size=SIZE";
  return "c2h=" + c.c2h + ",h2c=" + c.h2c + ",size=SIZE";
}

int run(bool json) {
  auto devs = list_pci_devices();
  if (!devs.ok()) return fail(devs.error());
  // PCIMIRROR_DEV_DIR stands in for /dev in the tests.
  const char* dev_env = std::getenv("PCIMIRROR_DEV_DIR");
  const auto xdma = find_xdma_channels(dev_env && *dev_env ? dev_env : "/dev");
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& d : *devs) {
      nlohmann::json bars = nlohmann::json::array();
      for (const auto& b : d.memory_bars)
        bars.push_back({{"index", b.index},
                        {"size_bytes", b.size_bytes},
                        {"prefetchable", b.prefetchable},
                        {"is_64", b.is_64},
                        {"memory_spec", "pci=" + d.slot + ",bar=" + std::to_string(b.index)}});
      j.push_back({{"kind", "pci"},
                   {"slot", d.slot},
                   {"vendor_id", d.vendor_id},
                   {"device_id", d.device_id},
                   {"vendor_name", d.vendor_name},
                   {"device_name", d.device_name},
                   {"driver", d.driver},
                   {"io_bars", d.io_bars},
                   {"memory_bars", bars}});
    }
    for (const XdmaChannel& c : xdma)
      j.push_back({{"kind", "xdma"},
                   {"prefix", c.prefix},
                   {"channel", c.channel},
                   {"c2h", c.c2h},
                   {"h2c", c.h2c},
                   {"memory_spec", xdma_spec(c)}});
    std::cout << j.dump(2) << "\n";
    return kOk;
  }
  if (devs->empty()) std::cout << "no PCI devices found\n";
  for (const auto& d : *devs) {
    std::printf("%s %04x:%04x %s%s%s\n", d.slot.c_str(), d.vendor_id, d.device_id,
                d.vendor_name.c_str(), d.device_name.empty() ? "" : " ",
                d.device_name.c_str());
    std::printf("    driver: %s\n", d.driver.empty() ? "(none)" : d.driver.c_str());
    for (const auto& b : d.memory_bars)
      std::printf("    BAR %u: %-10s memory, %s-bit, %s   pci=%s,bar=%u\n", b.index,
                  format_bytes(b.size_bytes).c_str(), b.is_64 ? "64" : "32",
                  b.prefetchable ? "prefetchable" : "non-prefetchable",
                  d.slot.c_str(), b.index);
    if (d.memory_bars.empty()) std::printf("    no memory BARs\n");
  }
  if (!xdma.empty())
    std::printf(
        "XDMA channels (card memory by DMA; set size= and, if the "
        "memory does not start at card address 0, card_offset=):\n");
  for (const XdmaChannel& c : xdma)
    std::printf("    %s channel %u: %s, %s   %s\n", c.prefix.c_str(), c.channel,
                c.c2h.c_str(), c.h2c.c_str(), xdma_spec(c).c_str());
  return kOk;
}

}  // namespace

void add_devices(CLI::App& app, int& rc) {
  auto json = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand(
      "devices",
      "List PCI devices, their memory BARs and XDMA channels, to pick one");
  c->add_flag("--json", *json, "Machine-readable output");
  c->callback([json, &rc] { rc = run(*json); });
}

}  // namespace pcimirror::cli
