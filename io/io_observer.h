// A hook that sees every write, read and flush a BlockDevice or the io_uring
// engine completes, and decides the result reported to the caller. Test
// wrappers implement it (RecordingDevice, FaultyDevice); production code
// leaves it unset. In the spirit of LevelDB's fault_injection_test Env and
// dm-log-writes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pcimirror {

class IoObserver {
 public:
  virtual ~IoObserver() = default;
  /// A write of `length_bytes` at `offset_bytes` completed with `result`
  /// (bytes written, or -errno); `data` holds the bytes submitted. Returns
  /// the result to report: -EIO or a short count inject a fault.
  virtual int64_t on_write(uint64_t offset_bytes, const std::byte* data,
                           uint64_t length_bytes, int64_t result) = 0;
  /// A read completed with `result`; returns the result to report.
  virtual int64_t on_read(uint64_t offset_bytes, uint64_t length_bytes,
                          int64_t result) = 0;
  /// A flush (fdatasync / IORING_OP_FSYNC) completed with `result` (0 or
  /// -errno); returns the result to report.
  virtual int on_flush(int result) = 0;
  /// The io_uring engine is about to call io_uring_enter(2) to submit its
  /// prepared requests and/or wait for completions. Returns 0 to make the
  /// call, or -errno to fail it with that errno without entering the
  /// kernel: the prepared SQEs stay in the SQ ring, as after a real failed
  /// submit. The default makes every call.
  virtual int on_enter() { return 0; }
};

}  // namespace pcimirror
