// The io_uring engine: moves a linear "mirror image" between memory and a
// list of device extents with O_DIRECT, in requests of io_size_bytes with up
// to queue_depth in flight (see io_uring_enter(2), liburing's
// io_uring-cp.c for the submit/complete shape).
//
// Writes take each chunk either straight from caller memory (zero-copy) or
// through the registered bounce pool (IORING_OP_WRITE_FIXED). Reads always go
// through the pool, so that callers can verify data before it reaches device
// memory. Short transfers, -EAGAIN and -EINTR are requeued; any other error
// fails the operation with its errno after all in-flight requests drained.
//
// One owner per request: a slot (and its buffer or caller memory) is freed
// only by the CQE carrying that request's own user_data, and every
// operation returns only when none of its requests is in flight. A failed
// io_uring_enter leaves its SQEs in the SQ ring; it is retried (EAGAIN,
// EBUSY, EINTR), or recorded as the operation's error and retried a few
// times (any other errno) so that what is in flight is still awaited. A
// ring that keeps failing with requests outstanding disables the engine:
// every later call fails with EIO (see docs/DESIGN.md).
//
// Copies and checksums run on the engine's copy workers (io/copy_workers.h,
// EngineOptions::copy_threads): the calling thread drives the ring and
// never copies, checksums or waits for one copy while another request or
// copy could progress. See docs/DESIGN.md, "The copy stage".
//
// Not thread-safe: one caller at a time (the mirror engine holds a lock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "io/block_device.h"
#include "io/result.h"

namespace pcimirror {

/// One contiguous run of the device, in bytes. Both fields are multiples of
/// the device's logical block size.
struct DeviceExtent {
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
};

struct EngineOptions {
  /// Maximum bytes per request; a multiple of 4096. Default 1 MiB.
  uint32_t io_size_bytes = 1u << 20;
  /// Maximum requests in flight. Default 16: with 16 buffers of 1 MiB, the
  /// best raw pipeline measured here (docs/BENCHMARKS.md); deeper queues
  /// help small slices.
  unsigned queue_depth = 16;
  /// Bounce buffers of io_size_bytes each, registered as fixed buffers.
  unsigned bounce_buffers = 16;
  /// Copy workers (1 to 64) that fill bounce buffers from the source, run
  /// observe() and run read sinks. Default kDefaultCopyThreads, measured
  /// (docs/DESIGN.md, "The copy stage").
  unsigned copy_threads = kDefaultCopyThreads;
  static constexpr unsigned kDefaultCopyThreads = 2;
};

/// Counters of one operation.
struct TransferStats {
  uint64_t bytes_direct = 0;   ///< bytes written straight from caller memory
  uint64_t bytes_bounced = 0;  ///< bytes that went through bounce buffers
  uint64_t requests = 0;       ///< SQEs submitted, requeues included
  uint64_t requeues = 0;       ///< short transfers / EAGAIN / EINTR retried
  uint64_t gathered = 0;  ///< chunks that joined a device-contiguous request
};

/// Where a write's bytes come from. `mirror_offset_bytes` counts from the
/// start of the mirror image; `length_bytes` is the valid data in the chunk
/// (the engine zero-pads the chunk to the logical block size).
///
/// Threads: direct() is called on the thread that called write(); fill()
/// and observe() on the copy workers, concurrently for different chunks of
/// the same source and in any order. Every call returns before write()
/// does.
class WriteSource {
 public:
  virtual ~WriteSource() = default;
  /// Memory to write from directly, or nullptr to bounce this chunk. The
  /// engine only asks for chunks whose length is block-aligned, and checks
  /// the returned pointer's alignment itself. Must be cheap: it runs on the
  /// ring's thread.
  virtual const std::byte* direct(uint64_t mirror_offset_bytes,
                                  uint64_t length_bytes) = 0;
  /// Copies the chunk into a bounce buffer. An error (with its errno: EIO
  /// from a device, ...) fails the write: nothing more is submitted, what
  /// is in flight drains, and write() returns the error.
  virtual Status fill(uint64_t mirror_offset_bytes, std::byte* dst,
                      uint64_t length_bytes) = 0;
  /// Called once per chunk, with the exact bytes that will be written (the
  /// source memory or the filled bounce buffer), before that chunk's
  /// request is submitted; chunks may come in any order and concurrently.
  virtual void observe(uint64_t mirror_offset_bytes, const std::byte* data,
                       uint64_t length_bytes) = 0;
};

/// One mirror image to write: its extents, its length and its source.
struct WriteJob {
  std::span<const DeviceExtent> extents;
  uint64_t length_bytes = 0;
  WriteSource* source = nullptr;
};

/// Where a read failed on the device: the part of the failing request that
/// did not transfer, for a medium error (EIO, ENODATA, EBADMSG, EILSEQ) or
/// no progress. Other errnos (ENOMEM, ECANCELED, ENODEV, ...) say nothing
/// about the sectors and leave it unknown.
struct ReadFailure {
  bool known =
      false;  ///< false: the read failed otherwise (sink, ring, EINVAL)
  uint64_t device_offset_bytes = 0;  ///< on the device
  uint64_t length_bytes = 0;         ///< of the request's untransferred part
  uint64_t mirror_offset_bytes = 0;  ///< of device_offset_bytes in the image
};

/// Receives read data: each request's bytes once, on a copy worker,
/// concurrently with other chunks and in any order (not mirror order); a
/// chunk never crosses `io_size_bytes` or a device extent. Returns an error
/// to abort the read: no request is submitted after it, and of several
/// failing sinks the read reports the one at the lowest mirror offset.
using ReadSink = std::function<Status(uint64_t mirror_offset_bytes,
                                      const std::byte* data,
                                      uint64_t length_bytes)>;

class UringEngine {
 public:
  /// Sets up a ring of queue_depth entries, a bounce pool registered as
  /// fixed buffers and copy_threads copy workers (stopped and joined by the
  /// destructor). Errors: EINVAL (bad options), EAGAIN when a worker thread
  /// cannot start, ENOMEM with a message
  /// naming RLIMIT_MEMLOCK when the pool cannot be registered, ENOSYS when
  /// the kernel lacks io_uring.
  static Result<std::unique_ptr<UringEngine>> create(const BlockDevice& device,
                                                     EngineOptions options);
  ~UringEngine();
  UringEngine(const UringEngine&) = delete;
  UringEngine& operator=(const UringEngine&) = delete;

  const EngineOptions& options() const;
  /// Bytes held by the bounce pool.
  size_t bounce_pool_bytes() const;
  /// Testing: bounce buffers not held by any request or copy (all of them
  /// between operations).
  unsigned free_bounce_buffers() const;

  /// Writes `length_bytes` of mirror image over `extents` (whose total must
  /// cover length_bytes rounded up to the logical block size). Returns once
  /// no request is in flight. Errors: the first failing request's errno
  /// (EIO, ENOSPC, ...); EINVAL for bad extents; a failed io_uring_enter's
  /// errno (EAGAIN, EBUSY and EINTR are retried first); EIO for a
  /// completion that is no request's in flight, and when the engine is
  /// disabled (a ring that kept failing); a fill()'s error (the first one
  /// the engine took). Returns once no request is in flight and no copy
  /// runs.
  Result<TransferStats> write(std::span<const DeviceExtent> extents,
                              uint64_t length_bytes, WriteSource& source);

  /// Writes several mirror images as one pipeline: requests of job i+1 are
  /// submitted while those of job i are in flight, so many small slices
  /// keep the queue full (group commit). Each source sees only its own
  /// chunks. A bounced chunk that ends where the next job's chunk starts on
  /// the device shares its bounce buffer with it (up to io_size_bytes), so
  /// small slices laid out side by side go out as large requests. Errors as
  /// write().
  Result<TransferStats> write(std::span<const WriteJob> jobs);

  /// Reads `length_bytes` of mirror image from `extents` through the bounce
  /// pool and hands each chunk to `sink` on a copy worker (see ReadSink).
  /// Returns once no request is in flight and no sink is running. Errors as
  /// write(), and the sink's. When the operation's error is a request the
  /// device failed (EIO, ...), and `failure` is given, it is set to where
  /// (known = true); it is left unchanged otherwise.
  Result<TransferStats> read(std::span<const DeviceExtent> extents,
                             uint64_t length_bytes, const ReadSink& sink,
                             ReadFailure* failure = nullptr);

  /// IORING_OP_FSYNC with IORING_FSYNC_DATASYNC: completed writes become
  /// durable. Reports only the result of its own fsync's CQE (its own
  /// user_data), and returns once that CQE arrived. Errors: the fsync's
  /// errno (EIO, ...); a failed io_uring_enter's errno (EAGAIN, EBUSY and
  /// EINTR are retried first); EIO for any other completion meanwhile, and
  /// when the engine is disabled.
  Status flush();

  /// Testing only: submits a no-op request tagged `user_data` that no
  /// operation prepared, so the next operation meets a completion that is
  /// not its own (and must report EIO for it). Errors: io_uring_submit's.
  Status inject_stray_completion_for_testing(uint64_t user_data);

 private:
  struct Impl;
  explicit UringEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pcimirror
