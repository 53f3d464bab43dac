#include "pcimap/dma_region.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "io/units.h"
#include "pcimap/region_factory.h"

namespace pcimirror {
namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// card_offset=: bytes with K/M/G suffixes, or 0x hex (card addresses are
// usually written in hex).
Result<uint64_t> parse_card_offset(const std::string& text) {
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
    return parse_uint(text, "card_offset=");
  return parse_size_bytes(text, "card_offset=");
}

Result<UniqueFd> open_channel(const std::string& path, bool to_card,
                              uint64_t need_bytes) {
  const char* what = to_card ? "host-to-card (h2c=)" : "card-to-host (c2h=)";
  UniqueFd fd(
      ::open(path.c_str(), (to_card ? O_WRONLY : O_RDONLY) | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    return make_error(
        err, "cannot open the DMA " + std::string(what) + " channel " + path +
                 ": " + std::strerror(err) +
                 (err == ENOENT || err == ENODEV || err == ENXIO
                      ? "; is the board's DMA driver loaded (modprobe xdma) "
                        "and the path right? 'pcimirror devices' lists the "
                        "XDMA channels"
                  : err == EACCES || err == EPERM
                      ? "; run as root or give this user access to "
                        "the device"
                      : ""));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error("cannot stat " + path);
  if (S_ISREG(st.st_mode)) {
    // A stand-in for card memory (tests): it must hold the window.
    if (static_cast<uint64_t>(st.st_size) < need_bytes)
      return make_error(EINVAL, "the DMA " + std::string(what) + " stand-in " +
                                    path + " holds " +
                                    std::to_string(st.st_size) +
                                    " bytes, less than card_offset + size = " +
                                    std::to_string(need_bytes) +
                                    "; grow it (truncate -s) or fix the spec");
  } else if (!S_ISCHR(st.st_mode)) {
    return make_error(EINVAL, "the DMA " + std::string(what) + " channel " +
                                  path +
                                  " is neither a character device nor a "
                                  "regular file");
  }
  return fd;
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

}  // namespace

Result<std::unique_ptr<DmaRegion>> DmaRegion::open(const MemorySpec& spec) {
  const std::string text = spec.to_string();
  std::string c2h = spec.get("c2h"), h2c = spec.get("h2c");
  if (spec.has("xdma")) {
    if (spec.has("c2h") || spec.has("h2c"))
      return make_error(EINVAL, "memory spec '" + text +
                                    "': give xdma=PREFIX or c2h=,h2c=, not "
                                    "both");
    c2h = spec.get("xdma") + "_c2h_0";
    h2c = spec.get("xdma") + "_h2c_0";
  }
  if (c2h.empty() || h2c.empty())
    return make_error(EINVAL, "memory spec '" + text +
                                  "': a DMA region needs both c2h=PATH and "
                                  "h2c=PATH (or xdma=/dev/xdmaN for channel "
                                  "0 of both)");
  if (!spec.has("size"))
    return make_error(EINVAL, "memory spec '" + text +
                                  "': a DMA region needs size= (the bytes of "
                                  "card memory to mirror)");
  auto r = std::unique_ptr<DmaRegion>(new DmaRegion());
  PCIM_ASSIGN_OR_RETURN(r->size_bytes_,
                        parse_size_bytes(spec.get("size"), "size="));
  if (r->size_bytes_ == 0)
    return make_error(EINVAL,
                      "memory spec '" + text + "': size= must not be 0");
  if (spec.has("card_offset")) {
    PCIM_ASSIGN_OR_RETURN(r->card_offset_,
                          parse_card_offset(spec.get("card_offset")));
  }
  if (spec.has("dma_align")) {
    PCIM_ASSIGN_OR_RETURN(
        r->align_, parse_size_bytes(spec.get("dma_align"), "dma_align="));
    if (r->align_ == 0 || (r->align_ & (r->align_ - 1)) != 0 ||
        r->align_ > (1u << 20))
      return make_error(EINVAL, "memory spec '" + text +
                                    "': dma_align=" + spec.get("dma_align") +
                                    " must be a power of two from 1 to 1M");
  }
  // pread/pwrite take a signed off_t.
  constexpr uint64_t kMaxOff =
      static_cast<uint64_t>(std::numeric_limits<off_t>::max());
  if (r->card_offset_ > kMaxOff || r->size_bytes_ > kMaxOff - r->card_offset_)
    return make_error(EINVAL, "memory spec '" + text +
                                  "': card_offset + size exceeds the largest "
                                  "file offset");
  const uint64_t end = r->card_offset_ + r->size_bytes_;
  PCIM_ASSIGN_OR_RETURN(r->c2h_, open_channel(c2h, false, end));
  PCIM_ASSIGN_OR_RETURN(r->h2c_, open_channel(h2c, true, end));
  r->c2h_path_ = c2h;
  r->h2c_path_ = h2c;
  r->name_ = "dma:" + c2h + "+" + h2c + "@" + hex(r->card_offset_);
  return r;
}

Error DmaRegion::failure(bool to_card, uint64_t card, size_t n, int err) const {
  const std::string& path = to_card ? h2c_path_ : c2h_path_;
  std::string remedy;
  switch (err) {
    case ETIMEDOUT:
      remedy =
          "the DMA engine did not complete in time (the xdma driver's "
          "c2h_timeout_ms/h2c_timeout_ms); check the board's DMA design and "
          "dmesg, then retry";
      break;
    case ENODEV:
    case ENXIO:
      remedy = "the device is gone; reload the driver or the board, then retry";
      break;
    case EINVAL:
      remedy =
          "the driver refused the transfer (alignment or card address out "
          "of range, see dmesg); check card_offset=, size= and dma_align=";
      break;
    default:
      remedy = "check the board and dmesg, then retry";
  }
  return make_error(
      err, std::string(to_card ? "DMA write to " : "DMA read from ") + path +
               " of " + std::to_string(n) + " bytes at card address " +
               hex(card) + " failed: " + std::strerror(err) + "; " + remedy);
}

Status DmaRegion::transfer(bool to_card, uint64_t card, std::byte* buf,
                           size_t n) const {
  while (n > 0) {
    const ssize_t got =
        to_card ? ::pwrite(h2c_.get(), buf, n, static_cast<off_t>(card))
                : ::pread(c2h_.get(), buf, n, static_cast<off_t>(card));
    if (got < 0) {
      if (errno == EINTR) continue;
      return failure(to_card, card, n, errno);
    }
    if (got == 0) {
      Error e = failure(to_card, card, n, EIO);
      e.message +=
          " (the device transferred nothing: is the card address "
          "beyond its memory?)";
      return e;
    }
    // A short transfer advances buffer and card address alike, so the rest
    // still meets the alignment rule.
    buf += got;
    card += static_cast<uint64_t>(got);
    n -= static_cast<size_t>(got);
  }
  return {};
}

Status DmaRegion::copy(bool to_card, uint64_t offset_bytes, std::byte* buf,
                       size_t n) const {
  const uint64_t card = card_offset_ + offset_bytes;
  const uint64_t mask = align_ - 1;
  if (((reinterpret_cast<uintptr_t>(buf) ^ card) & mask) == 0)
    return transfer(to_card, card, buf, n);
  // Misaligned: through a staging buffer whose address has the card
  // address's low bits.
  const size_t cap = std::min(n, kStagingBytes);
  void* raw = nullptr;
  const size_t al = std::max<size_t>(align_, sizeof(void*));
  if (::posix_memalign(&raw, al, cap + align_) != 0)
    return make_error(ENOMEM, "no memory for a " + std::to_string(cap) +
                                  "-byte DMA staging buffer for " + name_);
  std::unique_ptr<void, FreeDeleter> owner(raw);
  auto* base = static_cast<std::byte*>(raw);
  for (size_t done = 0; done < n;) {
    const size_t take = std::min(n - done, cap);
    const uint64_t at = card + done;
    std::byte* p = base + (at & mask);
    if (to_card) std::memcpy(p, buf + done, take);
    PCIM_TRY(transfer(to_card, at, p, take));
    if (!to_card) std::memcpy(buf + done, p, take);
    done += take;
  }
  staged_.fetch_add(n, std::memory_order_relaxed);
  return {};
}

Status DmaRegion::copy_from(uint64_t offset_bytes, void* dst,
                            size_t length_bytes) const {
  return copy(false, offset_bytes, static_cast<std::byte*>(dst), length_bytes);
}

Status DmaRegion::copy_to(uint64_t offset_bytes, const void* src,
                          size_t length_bytes) {
  // pwrite only reads the buffer; copy() takes one pointer type for both.
  return copy(true, offset_bytes,
              const_cast<std::byte*>(static_cast<const std::byte*>(src)),
              length_bytes);
}

std::vector<XdmaChannel> find_xdma_channels(const std::string& dev_dir) {
  std::vector<XdmaChannel> out;
  DIR* d = ::opendir(dev_dir.c_str());
  if (!d) return out;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    // NAME_c2h_K, NAME starting with "xdma".
    if (n.rfind("xdma", 0) != 0) continue;
    const size_t at = n.rfind("_c2h_");
    if (at == std::string::npos || at + 5 >= n.size()) continue;
    const std::string num = n.substr(at + 5);
    if (num.find_first_not_of("0123456789") != std::string::npos ||
        num.size() > 4)
      continue;
    const std::string prefix = n.substr(0, at);
    const std::string h2c = prefix + "_h2c_" + num;
    if (!std::binary_search(names.begin(), names.end(), h2c)) continue;
    out.push_back({dev_dir + "/" + prefix,
                   static_cast<unsigned>(std::stoul(num)), dev_dir + "/" + n,
                   dev_dir + "/" + h2c});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.prefix != b.prefix ? a.prefix < b.prefix : a.channel < b.channel;
  });
  return out;
}

}  // namespace pcimirror
