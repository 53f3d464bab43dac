// Helpers shared by the pcimirror subcommands.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fs/mirror.h"
#include "fs/volume.h"
#include "io/result.h"
#include "pcimap/region.h"
#include "pcimap/region_factory.h"

namespace pcimirror::cli {

/// Exit codes of the CLI.
enum Exit : int { kOk = 0, kFailure = 1, kUsage = 2 };

/// Prints "pcimirror: <message>" on stderr and returns kFailure.
int fail(const Error& e);
int fail(const std::string& message);

/// Loads the volume on `device_path`. `exclusive` opens O_EXCL|flock (for
/// commands that write); otherwise read-only and shared. Warnings are
/// printed to stderr.
Result<Volume> open_volume(const std::string& device_path, bool exclusive);

/// If `path` is a pcimirror mount point, the device it serves (from
/// /proc/self/mountinfo); otherwise nullopt.
std::optional<std::string> device_of_mountpoint(const std::string& path);
/// If `device` is served by a pcimirror mount, its mount point (from
/// /proc/self/mountinfo); otherwise nullopt.
std::optional<std::string> mountpoint_of_device(const std::string& device);

/// Why a control request (setxattr of a control name, fs/control_xattr.h)
/// on `mountpoint` failed with `err`: the daemon's message from the root's
/// user.pcimirror.last_error, or a remedy for permission errors.
std::string control_error_detail(const std::string& mountpoint, int err);
/// control_error_detail() ending with "; nothing was committed", said once
/// (the daemon's message may say it already).
std::string control_error_uncommitted(const std::string& mountpoint, int err);

/// The memory spec to use: `override_spec` when non-empty, else the one
/// recorded in the superblock.
Result<MemorySpec> effective_memory_spec(const Superblock& sb,
                                         const std::string& override_spec);

/// Path of this executable (/proc/self/exe).
std::string self_exe();

/// "12.3 s", "850 ms".
std::string format_duration_ns(uint64_t ns);
/// Local time "2026-11-21 00:12:03" of a wall-clock ns timestamp, "-" for 0.
std::string format_time_ns(int64_t ns);

}  // namespace pcimirror::cli
