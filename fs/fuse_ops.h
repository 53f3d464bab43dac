// Thin libfuse3 low-level adapters over SliceFs. No FUSE header leaks from
// here; see fs/fuse_ops.cc for the handlers.
#pragma once

#include <functional>
#include <string>

#include "fs/slice_fs.h"
#include "io/result.h"

namespace pcimirror {

struct FuseMountOptions {
  std::string mountpoint;
  std::string fsname;  ///< shown as the mount's source (the device path)
  bool read_only = false;
  bool allow_other = false;
  bool default_permissions = false;
  bool debug = false;
  /// Largest write the kernel sends at once (max_write; max_pages follows).
  uint32_t max_write_bytes = 1u << 20;
  unsigned max_idle_threads = 10;
};

/// Mounts `fs` at opts.mountpoint (nosuid,nodev,noexec), calls `on_mounted`
/// once the mount is live, and serves requests on the multi-threaded loop
/// until unmounted (umount, fusermount3 -u) or SIGINT/SIGTERM/SIGHUP; then
/// calls `on_stopping`, mirrors every dirty slice and unmounts. Errors: the
/// mount's errno with a message naming the mount point.
Status serve_fuse(SliceFs& fs, const FuseMountOptions& opts,
                  const std::function<void()>& on_mounted,
                  const std::function<void()>& on_stopping = {});

}  // namespace pcimirror
