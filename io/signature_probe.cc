#include "io/signature_probe.h"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <unistd.h>

namespace pcimirror {
namespace {

// Owner of a blkid_probe.
struct Probe {
  blkid_probe p;
  explicit Probe(blkid_probe pr) : p(pr) {}
  ~Probe() {
    if (p) blkid_free_probe(p);
  }
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;
  std::string value(const char* name) const {
    const char* v = nullptr;
    size_t len = 0;
    if (blkid_probe_lookup_value(p, name, &v, &len) == 0 && v) return v;
    return {};
  }
};

}  // namespace

Result<std::optional<std::string>> probe_signature(const std::string& path) {
  Probe pr(blkid_new_probe_from_filename(path.c_str()));
  if (!pr.p) return errno_error("cannot probe " + path + " for signatures");
  blkid_probe_enable_superblocks(pr.p, 1);
  blkid_probe_set_superblocks_flags(pr.p, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL |
                                              BLKID_SUBLKS_USAGE);
  blkid_probe_enable_partitions(pr.p, 1);
  int r = blkid_do_safeprobe(pr.p);
  if (r == 1) return std::optional<std::string>();
  if (r == -2)
    return std::optional<std::string>("several signatures (ambiguous probe result)");
  if (r < 0) return make_error(EIO, "probing " + path + " for signatures failed");
  const std::string pttype = pr.value("PTTYPE");
  if (!pttype.empty()) return std::optional<std::string>(pttype + " partition table");
  const std::string type = pr.value("TYPE"), usage = pr.value("USAGE");
  const std::string label = pr.value("LABEL");
  std::string what = type.empty() ? "an unknown signature" : type;
  if (usage == "filesystem") what += " filesystem";
  else if (usage == "raid") what += " RAID member";
  else if (usage == "crypto") what += " encrypted volume";
  else if (!usage.empty() && usage != "other") what += " (" + usage + ")";
  if (!label.empty()) what += " labelled '" + label + "'";
  return std::optional<std::string>(what);
}

Result<int> wipe_signatures(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno_error("cannot open " + path + " to wipe signatures");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  Probe pr(blkid_new_probe());
  if (!pr.p || blkid_probe_set_device(pr.p, fd, 0, 0) != 0)
    return make_error(EIO, "cannot probe " + path + " for signatures");
  blkid_probe_enable_superblocks(pr.p, 1);
  blkid_probe_set_superblocks_flags(pr.p, BLKID_SUBLKS_MAGIC);
  blkid_probe_enable_partitions(pr.p, 1);
  blkid_probe_set_partitions_flags(pr.p, BLKID_PARTS_MAGIC);
  int wiped = 0;
  while (blkid_do_probe(pr.p) == 0) {
    if (blkid_do_wipe(pr.p, 0) != 0)
      return errno_error("cannot wipe a signature on " + path);
    ++wiped;
  }
  if (::fsync(fd) != 0) return errno_error("cannot flush " + path);
  return wiped;
}

}  // namespace pcimirror
