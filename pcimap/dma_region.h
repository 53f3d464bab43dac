// Card memory behind a DMA engine's character devices, as the Xilinx/AMD
// XDMA driver (github.com/Xilinx/dma_ip_drivers, XDMA/linux-kernel/xdma)
// exposes it: /dev/xdmaN_c2h_K reads card memory (card to host) and
// /dev/xdmaN_h2c_K writes it (host to card), the file offset being the card
// address. The region has no mapping: every byte goes through copy_from and
// copy_to (docs/DESIGN.md, "DMA regions").
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "io/result.h"
#include "io/unique_fd.h"
#include "pcimap/region.h"

namespace pcimirror {

class MemorySpec;

class DmaRegion final : public Region {
 public:
  /// dma_align= when the spec omits it: a page, which satisfies every
  /// power-of-two addr_align the XDMA engine reports up to 4096.
  static constexpr uint64_t kDefaultAlignBytes = 4096;
  /// Largest staging buffer one copy allocates when the caller's buffer is
  /// misaligned with the card address (bounded: longer copies go through it
  /// piece by piece).
  static constexpr size_t kStagingBytes = 1 << 20;

  /// Opens the channel pair a memory spec names: c2h=PATH,h2c=PATH, or
  /// xdma=PREFIX for PREFIX_c2h_0 and PREFIX_h2c_0; size= (required, bytes,
  /// K/M/G), card_offset= (card address of region byte 0, bytes or 0x hex,
  /// default 0) and dma_align= (a power of two, 1 to 1 MiB, default 4096).
  /// c2h is opened O_RDONLY, h2c O_WRONLY. Each must be a character device
  /// or, as a stand-in for tests, a regular file holding card_offset + size
  /// bytes. Errors: EINVAL for a bad or missing key or a stand-in too short;
  /// open(2)'s errno (ENOENT, EACCES, ...) naming the path and the remedy.
  static Result<std::unique_ptr<DmaRegion>> open(const MemorySpec& spec);

  const std::string& name() const override { return name_; }
  RegionKind kind() const override { return RegionKind::kDma; }
  uint64_t size_bytes() const override { return size_bytes_; }
  /// No mapping: always nullptr. pages_pinnable() is false, so the mirror
  /// engine bounces and SliceFs::read_view answers EOPNOTSUPP.
  std::byte* base() const override { return nullptr; }
  bool pages_pinnable() const override { return false; }
  bool write_combining() const override { return false; }

  /// pread(2) on c2h at card address card_offset + offset_bytes, looping on
  /// short transfers and EINTR; never through io_uring (the XDMA driver's
  /// read_iter takes the card address from the iovec and always returns
  /// -EIOCBQUEUED). Synchronous: the driver pins `dst`'s pages and DMAs
  /// into them. XDMA's alignment rule (cdev_sgdma.c, check_transfer_align,
  /// AXI-MM incremental mode): the buffer address's low bits must equal the
  /// card address's, modulo the engine's addr_align, else EINVAL. When
  /// `dst` and the card address differ modulo dma_align, the copy goes
  /// through a staging buffer of at most kStagingBytes + dma_align bytes
  /// allocated for the call (then one memcpy per byte). Errors: the
  /// driver's errno (EIO, ETIMEDOUT after its c2h_timeout_ms, ENODEV,
  /// EINVAL), EIO when it transfers nothing, ENOMEM for the staging buffer;
  /// the message names the device, the card address and a remedy.
  /// Thread-safe.
  Status copy_from(uint64_t offset_bytes, void* dst,
                   size_t length_bytes) const override;
  /// pwrite(2) on h2c, as copy_from.
  Status copy_to(uint64_t offset_bytes, const void* src,
                 size_t length_bytes) override;

  const std::string& c2h_path() const { return c2h_path_; }
  const std::string& h2c_path() const { return h2c_path_; }
  uint64_t card_offset_bytes() const { return card_offset_; }
  uint64_t align_bytes() const { return align_; }
  /// Bytes that went through a staging buffer so far (for tests and
  /// status). Relaxed counter.
  uint64_t staged_bytes() const {
    return staged_.load(std::memory_order_relaxed);
  }

 private:
  DmaRegion() = default;
  // One transfer of `n` bytes at card address `card` with `buf` already
  // meeting the alignment rule (or dma_align 1).
  Status transfer(bool to_card, uint64_t card, std::byte* buf, size_t n) const;
  Status copy(bool to_card, uint64_t offset_bytes, std::byte* buf,
              size_t n) const;
  Error failure(bool to_card, uint64_t card, size_t n, int err) const;

  std::string name_, c2h_path_, h2c_path_;
  UniqueFd c2h_, h2c_;
  uint64_t size_bytes_ = 0;
  uint64_t card_offset_ = 0;
  uint64_t align_ = kDefaultAlignBytes;
  mutable std::atomic<uint64_t> staged_{0};
};

/// The XDMA channel pairs under `dev_dir` (normally "/dev"): for every
/// NAME_c2h_K with a matching NAME_h2c_K, the prefix path and K, sorted.
struct XdmaChannel {
  std::string prefix;  ///< e.g. "/dev/xdma0"
  unsigned channel = 0;
  std::string c2h, h2c;  ///< the two device paths
};
std::vector<XdmaChannel> find_xdma_channels(const std::string& dev_dir);

}  // namespace pcimirror
