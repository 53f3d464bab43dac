// The control protocol between `pcimirror slice|sync MOUNTPOINT` and the
// daemon: setxattr(2) of a control name on the mount's root directory. The
// value carries the request; setxattr's errno is the result, and the root's
// user.pcimirror.last_error then holds the daemon's message. Only root and
// the mount's owner may send requests (EPERM otherwise, checked with
// fuse_req_ctx in fs/fuse_ops.cc), even under allow_other.
#pragma once

#include <string>
#include <vector>

#include "fs/volume.h"
#include "io/result.h"

namespace pcimirror {

class SliceFs;

/// Mirrors the slices named in the value (newline-separated; empty: all)
/// with one group commit.
constexpr const char* kSyncXattr = "user.pcimirror.sync";
/// Declares a slice: NAME '\0' OFFSET '\0' LENGTH, both in decimal bytes.
constexpr const char* kSliceAddXattr = "user.pcimirror.slice.add";
/// Removes a slice: NAME.
constexpr const char* kSliceRmXattr = "user.pcimirror.slice.rm";
/// Renames a slice: FROM '\0' TO.
constexpr const char* kSliceRenameXattr = "user.pcimirror.slice.rename";
/// Declares the memory as it is now the truth (`pcimirror sync
/// --accept-memory`): an empty value. SliceFs::accept_memory.
constexpr const char* kAcceptMemoryXattr = "user.pcimirror.accept_memory";
/// Claims the canary (`pcimirror canary MOUNTPOINT OFFSET`): OFFSET in
/// decimal bytes. SliceFs::set_canary.
constexpr const char* kCanaryXattr = "user.pcimirror.canary";
/// Read-only, on the root: the message of the last refused request.
constexpr const char* kLastErrorXattr = "user.pcimirror.last_error";

/// True for the control names above that take requests.
bool is_control_xattr(const std::string& name);

/// Request values. Names may hold any byte but '\0' and '/'; they are
/// checked by the daemon (validate_name, docs/FORMAT.md §3).
std::string encode_slice_add(const SliceSpec& spec);
std::string encode_slice_rename(const std::string& from, const std::string& to);

/// Decodes and carries out the request `value` of control xattr `name` on
/// `fs`. EINVAL for a malformed value, ENOTSUP for an unknown name;
/// otherwise the errno of the SliceFs call (EEXIST, ENOENT, EROFS, ENOSPC,
/// EIO, ...), with its message. Thread-safe as SliceFs is.
Status apply_control_xattr(SliceFs& fs, const std::string& name,
                           const std::string& value);

}  // namespace pcimirror
