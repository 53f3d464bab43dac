// pcimirror devices [--json]: PCI devices and their memory BARs, the way
// `lspci -v` shows them, with the memory spec that selects each BAR.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "io/units.h"
#include "pcimap/pci_bar_region.h"

namespace pcimirror::cli {
namespace {

int run(bool json) {
  auto devs = list_pci_devices();
  if (!devs.ok()) return fail(devs.error());
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
      j.push_back({{"slot", d.slot},
                   {"vendor_id", d.vendor_id},
                   {"device_id", d.device_id},
                   {"vendor_name", d.vendor_name},
                   {"device_name", d.device_name},
                   {"driver", d.driver},
                   {"io_bars", d.io_bars},
                   {"memory_bars", bars}});
    }
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
  return kOk;
}

}  // namespace

void add_devices(CLI::App& app, int& rc) {
  auto json = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand(
      "devices", "List PCI devices and their memory BARs, to pick one");
  c->add_flag("--json", *json, "Machine-readable output");
  c->callback([json, &rc] { rc = run(*json); });
}

}  // namespace pcimirror::cli
