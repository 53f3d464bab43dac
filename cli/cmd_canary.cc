// pcimirror canary DEVICE|MOUNTPOINT OFFSET: claim 64 bytes of the region
// at OFFSET for the canary (docs/FORMAT.md §4.2) on an existing volume. On a
// DEVICE (not mounted) the change is one metadata commit made here; on a
// MOUNTPOINT the daemon makes it through the root's control xattr
// (fs/control_xattr.h). Either way pcimirror writes a new random nonce into
// memory first, then commits it.
#include <sys/xattr.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/mount_options.h"
#include "fs/control_xattr.h"
#include "io/units.h"

namespace pcimirror::cli {
namespace {

int run(const std::string& target, const std::string& offset_text) {
  auto offset = parse_size_bytes(offset_text, "canary OFFSET");
  if (!offset.ok()) return fail(offset.error());
  const std::string done = "canary at region byte " + std::to_string(*offset) +
                           " (64 bytes) written and committed";
  if (auto device = device_of_mountpoint(target)) {
    const std::string value = std::to_string(*offset);
    if (::setxattr(target.c_str(), kCanaryXattr, value.data(), value.size(),
                   0) != 0) {
      const int err = errno;
      return fail("canary on " + target + " (" + *device + ") failed (" +
                  std::strerror(err) +
                  "): " + control_error_uncommitted(target, err));
    }
    std::cout << done << " on " << target << "\n";
    return kOk;
  }
  if (auto mnt = mountpoint_of_device(target))
    return fail(target + " is mounted on " + *mnt +
                "; claim the canary through the mount: pcimirror canary " +
                *mnt + " " + offset_text);
  auto vol = open_volume(target, true);
  if (!vol.ok()) return fail(vol.error());
  auto spec = effective_memory_spec(vol->superblock(), "");
  if (!spec.ok()) return fail(spec.error());
  auto region = open_region(*spec);
  if (!region.ok()) return fail(region.error());
  auto engine = MirrorEngine::create(*vol, **region, MirrorOptions{});
  if (!engine.ok()) return fail(engine.error());
  if (Status s = (*engine)->set_canary(*offset); !s.ok())
    return fail(s.error());
  std::cout << done << " (metadata generation " << vol->table().generation
            << ")\n";
  return kOk;
}

}  // namespace

void add_canary(CLI::App& app, int& rc) {
  struct Args {
    std::string target, offset;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "canary",
      "Claim 64 bytes of the region for a canary that detects reset memory");
  c->add_option("target", a->target,
                "Block device or image file (unmounted), or the mount point "
                "of a mounted volume")
      ->required();
  c->add_option("offset", a->offset,
                "Region offset of the canary: 8-byte aligned, outside every "
                "slice (K/M/G suffixes)")
      ->required();
  c->footer(
      "From then on every mirror checks the canary before and after it, and "
      "refuses memory whose canary changed (reset, reload, power cycle) "
      "until pcimirror restore or sync --accept-memory. See pcimirror(8).");
  c->callback([a, &rc] { rc = run(a->target, a->offset); });
}

}  // namespace pcimirror::cli
