// Parsing and printing of byte sizes and durations for options and specs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/result.h"

namespace pcimirror {

/// Parses "4096", "64K", "256M", "1G", "2T" (binary multiples; "KiB", "MiB",
/// "GiB", "TiB" and lower case accepted) into bytes. Errors: EINVAL for an
/// empty string, an unknown suffix or trailing junk, ERANGE on overflow.
/// `what` names the option for the message.
Result<uint64_t> parse_size_bytes(std::string_view text, std::string_view what);

/// Parses an unsigned integer, decimal or 0x-prefixed hex. EINVAL/ERANGE.
Result<uint64_t> parse_uint(std::string_view text, std::string_view what);

/// Parses a duration: "500ms", "30s", "5m", "2h", or a bare number of
/// seconds, into milliseconds. "0" means never. EINVAL/ERANGE.
Result<uint64_t> parse_duration_ms(std::string_view text, std::string_view what);

/// Splits "k=v,flag,k=v" into (key, value) pairs in order; a bare flag has
/// an empty value; empty items are skipped. The syntax of mount options and
/// memory specs.
std::vector<std::pair<std::string, std::string>> split_key_values(std::string_view text);

/// Now, in nanoseconds since the Unix epoch (CLOCK_REALTIME): the times
/// the metadata records (docs/FORMAT.md §1).
int64_t wall_clock_ns();

/// "256 MiB", "1.5 GiB", "512 B".
std::string format_bytes(uint64_t bytes);

constexpr uint64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;

}  // namespace pcimirror
