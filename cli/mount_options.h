// The mount options (-o key=value,...), shared by `pcimirror mount`, the
// mount.fuse3 form and fstab. Memory keys (file=, size=, pci=, ...) override
// the memory spec recorded at format time.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "fs/fuse_ops.h"
#include "fs/mirror.h"
#include "fs/slice_fs.h"
#include "fs/ups_watch.h"
#include "io/result.h"

namespace pcimirror::cli {

enum class RestorePolicy { kNever, kOnMount };

struct MountOptions {
  std::string memory_override;  ///< memory keys given with -o, as a spec
  MirrorOptions mirror;
  RestorePolicy restore = RestorePolicy::kNever;
  bool read_only = false;
  bool allow_other = false;
  bool default_permissions = false;
  bool debug = false;
  uint32_t max_write_bytes = 1u << 20;
  std::string uuid;  ///< refuse a volume with another UUID
  MirrorOnClose mirror_on_close = MirrorOnClose::kSync;
  uint64_t interval_ms = 0;
  bool host_only_writes = false;
  /// Declare the memory at mount the truth (a new canary nonce).
  bool accept_memory = false;
  bool write_behind = true;
  std::optional<uint32_t> uid, gid, umask;  ///< owner and mode of slice files
  std::optional<UpsTarget> ups;             ///< ups=: the UPS watch
  uint64_t ups_interval_ms = 30000;         ///< ups_interval=
  double ups_margin = 2.0;                  ///< ups_margin=
};

/// Parses "k=v,flag,...". Generic fstab options (defaults, nofail, noauto,
/// auto, user, users, nouser, _netdev, rw, x-*, comment=*) are accepted
/// and ignored. EINVAL naming the option for an unknown key or bad value,
/// and for allow_other without default_permissions (other users must get
/// the kernel's permission checks).
Result<MountOptions> parse_mount_options(const std::string& text);

/// Joins repeated -o arguments with commas, as mount(8) does.
std::string join_options(const std::vector<std::string>& parts);

}  // namespace pcimirror::cli
