#include "cli/common.h"

#include <limits.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "fs/control_xattr.h"

namespace pcimirror::cli {

int fail(const Error& e) { return fail(e.what()); }
int fail(const std::string& message) {
  std::cerr << "pcimirror: " << message << "\n";
  return kFailure;
}

Result<Volume> open_volume(const std::string& device_path, bool exclusive) {
  BlockDevice::OpenOptions o;
  o.exclusive = exclusive;
  o.read_only = !exclusive;
  PCIM_ASSIGN_OR_RETURN(BlockDevice dev, BlockDevice::open(device_path, o));
  PCIM_ASSIGN_OR_RETURN(Volume v, Volume::load(std::move(dev)));
  for (const auto& w : v.warnings()) std::cerr << "pcimirror: warning: " << w << "\n";
  return v;
}

// Undoes the octal escapes (\040 for space) of /proc/self/mountinfo.
static std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

namespace {
// Each pcimirror mount in /proc/self/mountinfo as {mount point, source}.
std::vector<std::pair<std::string, std::string>> pcimirror_mounts() {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::vector<std::string> f;
    std::string w;
    while (ss >> w) f.push_back(w);
    // id parent major:minor root mountpoint options [optional...] - type source
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 5 || dash + 2 >= f.size()) continue;
    if (f[dash + 1] != "fuse.pcimirror") continue;
    out.emplace_back(unescape(f[4]), unescape(f[dash + 2]));
  }
  return out;
}
}  // namespace

std::optional<std::string> device_of_mountpoint(const std::string& path) {
  std::error_code ec;
  auto canon = std::filesystem::weakly_canonical(path, ec);
  // A mount that only its owner may enter (no allow_other) cannot be
  // resolved by others: compare the plain absolute path then.
  if (ec) canon = std::filesystem::absolute(path, ec).lexically_normal();
  if (ec) return std::nullopt;
  for (const auto& [mnt, source] : pcimirror_mounts())
    if (mnt == canon.string()) return source;
  return std::nullopt;
}

std::optional<std::string> mountpoint_of_device(const std::string& device) {
  std::error_code ec;
  auto canon = std::filesystem::weakly_canonical(device, ec);
  if (ec) return std::nullopt;
  for (const auto& [mnt, source] : pcimirror_mounts()) {
    auto src = std::filesystem::weakly_canonical(source, ec);
    if (!ec && src == canon) return mnt;
  }
  return std::nullopt;
}

std::string control_error_detail(const std::string& mountpoint, int err) {
  if (err == EPERM || err == EACCES)
    return "only root and the mount's owner may control the volume";
  char msg[4096] = {};
  const ssize_t n =
      ::getxattr(mountpoint.c_str(), kLastErrorXattr, msg, sizeof msg - 1);
  if (n > 0) return std::string(msg, static_cast<size_t>(n));
  return "the daemon's log (journalctl -t pcimirror) names the cause";
}

std::string control_error_uncommitted(const std::string& mountpoint, int err) {
  std::string d = control_error_detail(mountpoint, err);
  if (d.find("nothing was committed") == std::string::npos)
    d += "; nothing was committed";
  return d;
}

Result<MemorySpec> effective_memory_spec(const Superblock& sb,
                                         const std::string& override_spec) {
  const std::string& text = override_spec.empty() ? sb.memory_spec : override_spec;
  auto spec = MemorySpec::parse(text);
  if (!spec.ok()) return spec.take_error();
  // A recorded file or DMA region keeps its recorded size when the override
  // omits it.
  if (!spec->has("size") &&
      (spec->has("file") || spec->has("memfd") || spec->has("c2h") ||
       spec->has("h2c") || spec->has("xdma")))
    spec->set("size", std::to_string(sb.region_bytes));
  return spec;
}

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "pcimirror";
  return std::string(buf, static_cast<size_t>(n));
}

std::string format_duration_ns(uint64_t ns) {
  char buf[32];
  if (ns >= 10'000'000'000ull)
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ns) / 1e9);
  else if (ns >= 1'000'000'000ull)
    std::snprintf(buf, sizeof buf, "%.2f s", static_cast<double>(ns) / 1e9);
  else
    std::snprintf(buf, sizeof buf, "%.1f ms", static_cast<double>(ns) / 1e6);
  return buf;
}

std::string format_time_ns(int64_t ns) {
  if (ns == 0) return "-";
  std::time_t t = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

}  // namespace pcimirror::cli
