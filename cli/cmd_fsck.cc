// pcimirror fsck DEVICE [--verify] [--repair] [--json]
// Exit codes follow fsck(8): 0 clean, 1 errors corrected, 4 errors left
// uncorrected, 8 operational error.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "fs/fsck.h"

namespace pcimirror::cli {
namespace {

constexpr int kFsckOperational = 8;

int run(const std::string& device, bool verify, bool repair, bool json) {
  BlockDevice::OpenOptions o;
  o.read_only = !repair;
  o.exclusive = repair;
  auto dev = BlockDevice::open(device, o);
  if (!dev.ok()) {
    fail(dev.error());
    return kFsckOperational;
  }
  FsckOptions fo;
  fo.verify = verify;
  fo.repair = repair;
  std::unique_ptr<Progress> vbar;
  fo.progress = [&](uint64_t done, uint64_t total) {
    if (json) return;
    if (!vbar) vbar = std::make_unique<Progress>("fsck --verify", total);
    vbar->update(done);
  };
  auto rep = run_fsck(std::move(dev).value(), fo);
  if (vbar) vbar->finish();
  if (!rep.ok()) {
    fail(rep.error());
    return kFsckOperational;
  }
  static const char* sev[] = {"info", "warning", "error"};
  if (json) {
    nlohmann::json j;
    j["device"] = device;
    j["generation"] = rep->generation;
    j["slices"] = rep->slices;
    j["verified_bytes"] = rep->verified_bytes;
    j["exit_code"] = rep->exit_code();
    j["findings"] = nlohmann::json::array();
    for (const auto& f : rep->findings) {
      nlohmann::json jf = {{"severity", sev[f.severity]},
                           {"message", f.message},
                           {"repaired", f.repaired}};
      if (f.damage) {
        const CopyDamage& d = *f.damage;
        nlohmann::json extents = nlohmann::json::array();
        for (const DeviceExtent& x : d.device)
          extents.push_back({{"offset_bytes", x.offset_bytes},
                             {"length_bytes", x.length_bytes}});
        jf["damage"] = {{"slice", f.slice},
                        {"copy", d.copy},
                        {"generation", d.generation},
                        {"errno", d.code},
                        {"error", d.errno_name()},
                        {"unreadable", d.unreadable},
                        {"slice_offset_bytes", d.slice_offset_bytes},
                        {"length_bytes", d.length_bytes},
                        {"device", extents}};
      }
      j["findings"].push_back(std::move(jf));
    }
    // Names from older volumes may not be UTF-8: replaced, never a throw.
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
    return rep->exit_code();
  }
  for (const auto& f : rep->findings)
    std::printf("%s: %s%s\n", sev[f.severity], f.message.c_str(),
                f.repaired ? " [repaired]" : "");
  const int rc = rep->exit_code();
  std::printf("%s: generation %llu, %zu slices%s: %s\n", device.c_str(),
              static_cast<unsigned long long>(rep->generation), rep->slices,
              verify ? (", " + std::to_string(rep->verified_bytes) +
                        " mirrored bytes verified").c_str()
                     : "",
              rc == 0 ? "clean" : rc == 1 ? "errors corrected" : "errors left uncorrected");
  if (rc == 4 && !repair)
    std::printf("run 'pcimirror fsck %s --verify --repair' to repair what can be\n",
                device.c_str());
  return rc;
}

}  // namespace

void add_fsck(CLI::App& app, int& rc) {
  struct Args {
    std::string device;
    bool verify = false, repair = false, json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "fsck", "Check a volume's metadata (and with --verify its mirrors)");
  c->add_option("device", a->device, "Block device or image file")->required();
  c->add_flag("--verify", a->verify, "Read every mirror and check its CRC32Cs");
  c->add_flag("--repair", a->repair, "Repair what can be repaired (never without it)");
  c->add_flag("--json", a->json, "Machine-readable output");
  c->callback([a, &rc] { rc = run(a->device, a->verify, a->repair, a->json); });
}

}  // namespace pcimirror::cli
