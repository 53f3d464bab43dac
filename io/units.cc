#include "io/units.h"

#include <cctype>
#include <chrono>
#include <cstdio>

namespace pcimirror {

Result<uint64_t> parse_uint(std::string_view text, std::string_view what) {
  std::string_view t = text;
  int base = 10;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    base = 16;
    t.remove_prefix(2);
  }
  if (t.empty())
    return make_error(EINVAL, std::string(what) + ": '" + std::string(text) +
                                  "' is not a number");
  uint64_t v = 0;
  for (char ch : t) {
    int d;
    if (ch >= '0' && ch <= '9') d = ch - '0';
    else if (base == 16 && std::isxdigit(static_cast<unsigned char>(ch)))
      d = std::tolower(static_cast<unsigned char>(ch)) - 'a' + 10;
    else
      return make_error(EINVAL, std::string(what) + ": '" + std::string(text) +
                                    "' is not a number");
    if (v > (UINT64_MAX - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base))
      return make_error(ERANGE, std::string(what) + ": '" + std::string(text) +
                                    "' is too large");
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  return v;
}

Result<uint64_t> parse_size_bytes(std::string_view text, std::string_view what) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0)
    return make_error(EINVAL, std::string(what) + ": '" + std::string(text) +
                                  "' is not a size; use a number with an "
                                  "optional K, M, G or T suffix");
  PCIM_ASSIGN_OR_RETURN(uint64_t n, parse_uint(text.substr(0, i), what));
  std::string suffix;
  for (char ch : text.substr(i))
    suffix += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  int shift = -1;
  if (suffix.empty() || suffix == "B") shift = 0;
  else if (suffix == "K" || suffix == "KB" || suffix == "KIB") shift = 10;
  else if (suffix == "M" || suffix == "MB" || suffix == "MIB") shift = 20;
  else if (suffix == "G" || suffix == "GB" || suffix == "GIB") shift = 30;
  else if (suffix == "T" || suffix == "TB" || suffix == "TIB") shift = 40;
  if (shift < 0)
    return make_error(EINVAL, std::string(what) + ": unknown size suffix in '" +
                                  std::string(text) + "'; use K, M, G or T");
  if (shift && n > (UINT64_MAX >> shift))
    return make_error(ERANGE, std::string(what) + ": '" + std::string(text) +
                                  "' is too large");
  return n << shift;
}

Result<uint64_t> parse_duration_ms(std::string_view text, std::string_view what) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0)
    return make_error(EINVAL, std::string(what) + ": '" + std::string(text) +
                                  "' is not a duration; use e.g. 500ms, 30s, 5m, 1h");
  PCIM_ASSIGN_OR_RETURN(uint64_t n, parse_uint(text.substr(0, i), what));
  const std::string_view unit = text.substr(i);
  uint64_t mult;
  if (unit == "ms") mult = 1;
  else if (unit.empty() || unit == "s") mult = 1000;
  else if (unit == "m" || unit == "min") mult = 60 * 1000;
  else if (unit == "h") mult = 3600 * 1000;
  else
    return make_error(EINVAL, std::string(what) + ": unknown unit in '" +
                                  std::string(text) + "'; use ms, s, m or h");
  if (n > UINT64_MAX / mult)
    return make_error(ERANGE, std::string(what) + ": '" + std::string(text) + "' is too long");
  return n * mult;
}

std::vector<std::pair<std::string, std::string>> split_key_values(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    out.emplace_back(std::string(item.substr(0, eq)),
                     eq == std::string_view::npos ? std::string() : std::string(item.substr(eq + 1)));
  }
  return out;
}

std::string format_bytes(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0 || v == static_cast<double>(static_cast<uint64_t>(v)))
    std::snprintf(buf, sizeof buf, "%llu %s",
                  static_cast<unsigned long long>(v), units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

int64_t wall_clock_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace pcimirror
