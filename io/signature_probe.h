// Probes a device for existing signatures with libblkid (see
// blkid_do_safeprobe(3)): filesystems, partition tables, RAID members,
// swap, LVM, crypto containers. `format` refuses a device that has one.
#pragma once

#include <optional>
#include <string>

#include "io/result.h"

namespace pcimirror {

/// A description of the first signature found on `path` ("ext4 filesystem
/// labelled 'data'", "gpt partition table", "linux_raid_member raid
/// member", "several signatures (ambiguous)"), or nullopt when the device
/// holds none that libblkid knows. Errors: the errno of opening the device.
Result<std::optional<std::string>> probe_signature(const std::string& path);

/// Erases every signature libblkid finds on `path` (blkid_do_wipe(3), as
/// wipefs does), so no stale filesystem, RAID or partition-table magic
/// survives a forced format. Returns the number of signatures wiped.
/// Errors: the errno of opening, writing or flushing.
Result<int> wipe_signatures(const std::string& path);

}  // namespace pcimirror
