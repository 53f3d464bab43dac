#include "fs/control_xattr.h"

#include <cerrno>
#include <charconv>
#include <cstring>

#include "fs/slice_fs.h"

namespace pcimirror {
namespace {

std::vector<std::string> split(const std::string& value, char sep) {
  std::vector<std::string> out(1);
  for (char c : value) {
    if (c == sep)
      out.emplace_back();
    else
      out.back().push_back(c);
  }
  return out;
}

Result<uint64_t> parse_u64(const std::string& text, const char* what) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    return make_error(EINVAL, std::string("bad ") + what + " '" + text + "'");
  return v;
}

}  // namespace

bool is_control_xattr(const std::string& name) {
  return name == kSyncXattr || name == kSliceAddXattr ||
         name == kSliceRmXattr || name == kSliceRenameXattr ||
         name == kAcceptMemoryXattr || name == kCanaryXattr;
}

std::string encode_slice_add(const SliceSpec& spec) {
  std::string v = spec.name;
  v.push_back('\0');
  v += std::to_string(spec.offset_bytes);
  v.push_back('\0');
  v += std::to_string(spec.length_bytes);
  return v;
}

std::string encode_slice_rename(const std::string& from,
                                const std::string& to) {
  std::string v = from;
  v.push_back('\0');
  v += to;
  return v;
}

Status apply_control_xattr(SliceFs& fs, const std::string& name,
                           const std::string& value) {
  if (name == kSyncXattr) {
    std::vector<std::string> names;
    for (std::string& n : split(value, '\n'))
      if (!n.empty()) names.push_back(std::move(n));
    return fs.sync_batch(names);
  }
  if (name == kSliceAddXattr) {
    auto f = split(value, '\0');
    if (f.size() != 3)
      return make_error(EINVAL, "slice add: expected NAME, OFFSET, LENGTH");
    SliceSpec spec;
    spec.name = f[0];
    PCIM_ASSIGN_OR_RETURN(spec.offset_bytes, parse_u64(f[1], "offset"));
    PCIM_ASSIGN_OR_RETURN(spec.length_bytes, parse_u64(f[2], "length"));
    return fs.add_slice(spec);
  }
  if (name == kSliceRmXattr) {
    if (value.empty() || value.find('\0') != std::string::npos)
      return make_error(EINVAL, "slice rm: expected one NAME");
    return fs.remove_slice(value);
  }
  if (name == kSliceRenameXattr) {
    auto f = split(value, '\0');
    if (f.size() != 2)
      return make_error(EINVAL, "slice rename: expected FROM and TO");
    return fs.rename_slice(f[0], f[1]);
  }
  if (name == kAcceptMemoryXattr)
    return fs.accept_memory(
        "the memory was declared the truth (pcimirror sync "
        "--accept-memory)");
  if (name == kCanaryXattr) {
    PCIM_ASSIGN_OR_RETURN(uint64_t offset, parse_u64(value, "canary offset"));
    return fs.set_canary(offset);
  }
  return make_error(ENOTSUP, "unknown control attribute " + name);
}

}  // namespace pcimirror
