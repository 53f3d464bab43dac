#include "io/uring_engine.h"

#include <liburing.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <optional>
#include <thread>
#include <vector>

#include "io/bounce_pool.h"
#include "io/copy_workers.h"

namespace pcimirror {
namespace {

struct Chunk {
  uint64_t device_offset_bytes = 0;
  uint64_t mirror_offset_bytes = 0;
  uint32_t io_bytes = 0;    // request length, block-aligned
  uint32_t data_bytes = 0;  // valid data in the request (<= io_bytes)
};

// Walks extents, yielding chunks of at most io_size bytes that never cross an
// extent boundary.
class ChunkCursor {
 public:
  ChunkCursor(std::span<const DeviceExtent> extents, uint64_t length_bytes,
              uint64_t aligned_bytes, uint32_t io_size_bytes)
      : extents_(extents),
        length_bytes_(length_bytes),
        aligned_bytes_(aligned_bytes),
        io_size_bytes_(io_size_bytes) {}

  bool done() const { return mirror_offset_ >= aligned_bytes_; }

  Chunk next() {
    while (extent_offset_ >= extents_[index_].length_bytes) {
      ++index_;
      extent_offset_ = 0;
    }
    const DeviceExtent& e = extents_[index_];
    uint64_t io = std::min<uint64_t>(
        {io_size_bytes_, e.length_bytes - extent_offset_,
         aligned_bytes_ - mirror_offset_});
    Chunk c;
    c.device_offset_bytes = e.offset_bytes + extent_offset_;
    c.mirror_offset_bytes = mirror_offset_;
    c.io_bytes = static_cast<uint32_t>(io);
    c.data_bytes = static_cast<uint32_t>(
        std::min<uint64_t>(io, length_bytes_ - mirror_offset_));
    extent_offset_ += io;
    mirror_offset_ += io;
    return c;
  }

 private:
  std::span<const DeviceExtent> extents_;
  uint64_t length_bytes_;
  uint64_t aligned_bytes_;
  uint32_t io_size_bytes_;
  size_t index_ = 0;
  uint64_t extent_offset_ = 0;
  uint64_t mirror_offset_ = 0;
};

// A request's user_data: a sequence number above kTagIndexBits bits of slot
// index. A fresh number per SQE, so that only the CQE of a slot's current
// request frees it. The fsync of flush() takes the index kFlushIndex, which
// no slot has (queue_depth <= 1024).
constexpr unsigned kTagIndexBits = 16;
constexpr uint64_t kTagIndexMask = (uint64_t{1} << kTagIndexBits) - 1;
constexpr uint64_t kFlushIndex = kTagIndexMask;

// A failed io_uring_enter is retried, up to this many times in a row for
// EAGAIN and EBUSY (pausing longer each time, about 1 s in all), and for
// any other errno; past that the ring is taken as broken. EINTR (a signal
// during the wait) is retried at once, however often.
constexpr unsigned kMaxTransientEnterFailures = 100;
constexpr unsigned kMaxHardEnterFailures = 4;

struct Slot {
  Chunk chunk;
  std::byte* data = nullptr;  // where the request reads or writes
  int buffer = -1;            // bounce buffer index, -1 for direct memory
  uint32_t done_bytes = 0;
  bool complete = false;  // all io_bytes transferred
  bool finished = false;  // no request outstanding (complete or failed)
  bool in_use = false;    // held by an operation
  // A copy worker runs the slot's copy (fill and observe, or the read
  // sink): the buffer belongs to that task until the engine takes its Done.
  bool copying = false;
  // An SQE with `tag` is in the SQ ring or in the kernel. Only its CQE
  // clears this; until then the slot and its memory belong to the request.
  bool in_flight = false;
  uint64_t tag = 0;
};

// What completions report to the operation that is running.
struct Op {
  bool is_write = false;
  Status err;  // the first error
  ReadFailure failure;  // where, when `err` is a request the device failed
  TransferStats stats;
  std::vector<size_t> finished;  // slots whose requests ended, not yet taken
};

std::string memlock_hint(size_t bytes) {
  struct rlimit rl {};
  ::getrlimit(RLIMIT_MEMLOCK, &rl);
  std::string limit = rl.rlim_cur == RLIM_INFINITY
                          ? std::string("unlimited")
                          : std::to_string(rl.rlim_cur) + " bytes";
  return "cannot register " + std::to_string(bytes) +
         " bytes of bounce buffers with io_uring (RLIMIT_MEMLOCK is " + limit +
         "); raise it with 'ulimit -l' or LimitMEMLOCK=, or lower "
         "bounce_buffers/io_size";
}

}  // namespace

struct UringEngine::Impl {
  const BlockDevice* device = nullptr;
  EngineOptions options;
  io_uring ring{};
  bool ring_ready = false;
  std::optional<BouncePool> pool;
  std::unique_ptr<CopyWorkers> workers;  // the copy stage
  std::vector<Slot> slots;
  unsigned in_flight = 0;  // SQEs prepared whose CQE has not been handled
  uint64_t tag_seq = 0;
  bool flush_in_flight = false;
  uint64_t flush_tag = 0;
  int flush_result = 0;
  unsigned failed_enters = 0;  // io_uring_enter failures in a row
  // Set when the ring is given up with requests possibly outstanding: every
  // later call fails with it, and no slot in flight is ever reused.
  std::optional<Error> broken;
  std::vector<size_t> requeue_list;

  ~Impl() {
    // No copy runs between operations; the workers are joined first, while
    // the pool they would touch still exists. Requests still in flight (a
    // broken ring) are cancelled or awaited by the kernel; registered
    // buffers stay pinned until they end.
    workers.reset();
    if (ring_ready) io_uring_queue_exit(&ring);
  }

  // Submits the SQEs prepared and not yet submitted, if any, and handles
  // the completions available.
  void submit_pending(Op& op) {
    if (io_uring_sq_ready(&ring) > 0) pump(op, false);
  }

  // Blocks until something can progress: a CQE or a finished copy (both
  // signal the workers' eventfd, registered with the ring), or, when a
  // failed enter left SQEs unsubmitted, through pump()'s retries. Never
  // blocks when a CQE or a Done is already there. On a broken ring it
  // only waits for the copies still running.
  void wait_progress(Op& op) {
    if (broken) {
      if (!workers->has_done()) workers->wait_event();
      return;
    }
    if (io_uring_sq_ready(&ring) > 0) {
      pump(op, true);
      return;
    }
    if (io_uring_cq_ready(&ring) > 0) {
      handle_cqes(op);
      return;
    }
    if (workers->has_done()) return;
    workers->wait_event();
    handle_cqes(op);
  }

  Status usable() const {
    if (broken) return *broken;
    return {};
  }

  Status check_extents(std::span<const DeviceExtent> extents,
                       uint64_t aligned_bytes) const {
    uint64_t total = 0;
    for (const DeviceExtent& e : extents) {
      PCIM_TRY(device->check_io(e.offset_bytes, e.length_bytes, nullptr));
      total += e.length_bytes;
    }
    if (total < aligned_bytes)
      return make_error(EINVAL, "extents on " + device->path() + " hold " +
                                    std::to_string(total) + " bytes, need " +
                                    std::to_string(aligned_bytes));
    return {};
  }

  int free_slot() const {
    for (size_t i = 0; i < slots.size(); ++i)
      if (!slots[i].in_use) return static_cast<int>(i);
    return -1;
  }

  uint64_t next_tag(uint64_t index) {
    return (++tag_seq << kTagIndexBits) | index;
  }

  // Prepares an SQE for the not-yet-done part of slot `i`, which from then
  // on is in flight until its CQE. It is submitted by the next pump(). On
  // error no SQE was prepared and the slot is not in flight.
  Status queue(size_t i, bool is_write) {
    Slot& s = slots[i];
    // Never empty: SQEs pending are at most one per slot, and the SQ ring
    // has queue_depth entries.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (!sqe) return make_error(EBUSY, "io_uring submission queue full");
    std::byte* p = s.data + s.done_bytes;
    unsigned len = s.chunk.io_bytes - s.done_bytes;
    uint64_t off = s.chunk.device_offset_bytes + s.done_bytes;
    if (s.buffer >= 0) {
      if (is_write)
        io_uring_prep_write_fixed(sqe, device->fd(), p, len, off, s.buffer);
      else
        io_uring_prep_read_fixed(sqe, device->fd(), p, len, off, s.buffer);
    } else {
      io_uring_prep_write(sqe, device->fd(), p, len, off);
    }
    s.tag = next_tag(i);
    s.in_flight = true;
    ++in_flight;
    io_uring_sqe_set_data64(sqe, s.tag);
    return {};
  }

  // One io_uring_enter: submits every prepared SQE and, with `wait`, waits
  // for a completion. The observer may fail it (fault injection).
  int enter(bool wait) {
    if (IoObserver* obs = device->observer())
      if (int r = obs->on_enter(); r < 0) return r;
    return wait ? io_uring_submit_and_wait(&ring, 1) : io_uring_submit(&ring);
  }

  // Submits every prepared SQE and, with `wait`, waits for a completion;
  // then handles every completion available. A failed io_uring_enter leaves
  // the prepared SQEs in the SQ ring, where the next enter sends them. After
  // a failure the completions available are handled (EBUSY asks for that)
  // and the enter is retried: at once for EINTR, after a growing pause for
  // EAGAIN and EBUSY, and for any other errno too, after recording it as
  // the operation's error, so that what is in flight is still awaited. Too
  // many failures in a row (EINTR aside) break the engine.
  void pump(Op& op, bool wait) {
    while (!broken) {
      const int r = enter(wait);
      if (r >= 0) {
        failed_enters = 0;
        break;
      }
      if (r == -EINTR) {  // a signal: the ring is fine, the wait goes on
        if (handle_cqes(op) > 0 || !wait) return;
        continue;
      }
      ++failed_enters;
      const bool transient = r == -EAGAIN || r == -EBUSY;
      if (!transient && op.err.ok())
        op.err =
            sys_error(r, "io_uring_enter on " + device->path() + " failed");
      if (failed_enters >
          (transient ? kMaxTransientEnterFailures : kMaxHardEnterFailures)) {
        broken = make_error(
            EIO, "io_uring on " + device->path() + " failed " +
                     std::to_string(failed_enters) + " times in a row (" +
                     std::strerror(-r) + ") with " + std::to_string(in_flight) +
                     " requests outstanding; the engine is disabled");
        if (op.err.ok()) op.err = *broken;
        return;
      }
      if (handle_cqes(op) > 0 || !wait) return;  // progress; the caller loops
      const unsigned shift = std::min(failed_enters, 8u);
      std::this_thread::sleep_for(
          std::chrono::microseconds(std::min(50u << shift, 10000u)));
    }
    handle_cqes(op);
  }

  // Handles every CQE available, without entering the kernel; requeues
  // what needs it. Returns the number of CQEs handled.
  unsigned handle_cqes(Op& op) {
    io_uring_cqe* cqe = nullptr;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      complete(op, io_uring_cqe_get_data64(cqe), cqe->res);
    }
    io_uring_cq_advance(&ring, seen);
    for (size_t i : requeue_list) {
      if (Status q = queue(i, op.is_write); !q.ok()) {
        if (op.err.ok()) op.err = q;
        slots[i].finished = true;
        op.finished.push_back(i);
      }
    }
    requeue_list.clear();
    return seen;
  }

  // One CQE. Only the CQE whose user_data is a slot's current tag ends that
  // slot's request; any other is an EIO of the operation.
  void complete(Op& op, uint64_t tag, int res) {
    const uint64_t index = tag & kTagIndexMask;
    if (index == kFlushIndex && flush_in_flight && tag == flush_tag) {
      flush_in_flight = false;
      --in_flight;
      if (IoObserver* obs = device->observer()) res = obs->on_flush(res);
      flush_result = res;
      return;
    }
    if (index >= slots.size() || !slots[index].in_flight ||
        slots[index].tag != tag) {
      if (op.err.ok())
        op.err = make_error(
            EIO, "io_uring on " + device->path() +
                     " completed a request that is not in flight (user_data " +
                     std::to_string(tag) + ", result " + std::to_string(res) +
                     ")");
      return;
    }
    const size_t i = static_cast<size_t>(index);
    Slot& s = slots[i];
    s.in_flight = false;
    --in_flight;
    const bool is_write = op.is_write;
    if (IoObserver* obs = device->observer()) {
      const uint64_t off = s.chunk.device_offset_bytes + s.done_bytes;
      const uint64_t len = s.chunk.io_bytes - s.done_bytes;
      res = static_cast<int>(
          is_write ? obs->on_write(off, s.data + s.done_bytes, len, res)
                   : obs->on_read(off, len, res));
    }
    Status& err = op.err;
    bool requeue = false;
    // The untransferred part of the request, for a failure the device
    // reported.
    auto record_failure = [&] {
      op.failure = ReadFailure{true, s.chunk.device_offset_bytes + s.done_bytes,
                               s.chunk.io_bytes - s.done_bytes,
                               s.chunk.mirror_offset_bytes + s.done_bytes};
    };
    if (res == -EAGAIN || res == -EINTR) {
      requeue = true;
    } else if (res < 0) {
      if (err.ok()) {
        // Only the device's own verdict on these sectors makes them
        // unreadable (damage to that copy, which restore and fsck act on);
        // ENOMEM, ECANCELED, ENODEV and the like say nothing about the
        // bytes, and restore must not fall back to an older copy for them.
        if (res == -EIO || res == -ENODATA || res == -EBADMSG ||
            res == -EILSEQ)
          record_failure();
        err = sys_error(res, std::string(is_write ? "write" : "read") + " of " +
                                 std::to_string(s.chunk.io_bytes) +
                                 " bytes at byte " +
                                 std::to_string(s.chunk.device_offset_bytes) +
                                 " of " + device->path() + " failed");
      }
    } else if (res == 0) {
      if (err.ok()) {
        record_failure();
        err = make_error(
            EIO, std::string(is_write ? "write" : "read") + " at byte " +
                     std::to_string(s.chunk.device_offset_bytes) + " of " +
                     device->path() + " made no progress");
      }
    } else {
      s.done_bytes += static_cast<uint32_t>(res);
      if (s.done_bytes < s.chunk.io_bytes) {
        if (s.done_bytes % device->logical_block_size()) {
          if (err.ok()) {
            err = make_error(EIO,
                             "unaligned short transfer on " + device->path());
            record_failure();
          }
        } else {
          requeue = true;
        }
      }
    }
    if (requeue && err.ok()) {
      ++op.stats.requeues;
      ++op.stats.requests;
      requeue_list.push_back(i);
    } else {
      s.complete = res > 0 && s.done_bytes == s.chunk.io_bytes;
      s.finished = true;
      op.finished.push_back(i);
    }
  }
};

UringEngine::UringEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UringEngine::~UringEngine() = default;

const EngineOptions& UringEngine::options() const { return impl_->options; }
size_t UringEngine::bounce_pool_bytes() const {
  return impl_->pool->total_bytes();
}
unsigned UringEngine::free_bounce_buffers() const {
  return impl_->pool->free_count();
}

Result<std::unique_ptr<UringEngine>> UringEngine::create(
    const BlockDevice& device, EngineOptions options) {
  if (options.io_size_bytes < 4096 || options.io_size_bytes % 4096 ||
      options.io_size_bytes > (64u << 20))
    return make_error(EINVAL,
                      "io_size must be a multiple of 4096 between 4 KiB and "
                      "64 MiB, got " +
                          std::to_string(options.io_size_bytes));
  if (options.queue_depth < 1 || options.queue_depth > 1024)
    return make_error(EINVAL, "queue_depth must be between 1 and 1024, got " +
                                  std::to_string(options.queue_depth));
  if (options.bounce_buffers < 1 || options.bounce_buffers > 1024)
    return make_error(EINVAL,
                      "bounce_buffers must be between 1 and 1024, got " +
                          std::to_string(options.bounce_buffers));
  if (options.copy_threads < 1 || options.copy_threads > 64)
    return make_error(EINVAL, "copy_threads must be between 1 and 64, got " +
                                  std::to_string(options.copy_threads));
  auto impl = std::make_unique<Impl>();
  impl->device = &device;
  impl->options = options;
  int r = io_uring_queue_init(options.queue_depth, &impl->ring, 0);
  if (r < 0)
    return sys_error(r, "cannot set up io_uring with queue depth " +
                             std::to_string(options.queue_depth) +
                             " (is io_uring disabled by "
                             "kernel.io_uring_disabled?)");
  impl->ring_ready = true;
  PCIM_ASSIGN_OR_RETURN(BouncePool pool,
                        BouncePool::create(options.bounce_buffers,
                                           options.io_size_bytes));
  std::vector<iovec> iovs(pool.count());
  for (unsigned i = 0; i < pool.count(); ++i)
    iovs[i] = iovec{pool.buffer(i), pool.buffer_bytes()};
  r = io_uring_register_buffers(&impl->ring, iovs.data(),
                                static_cast<unsigned>(iovs.size()));
  if (r == -ENOMEM || r == -EPERM)
    return make_error(ENOMEM, memlock_hint(pool.total_bytes()));
  if (r < 0) return sys_error(r, "io_uring_register_buffers failed");
  impl->pool = std::move(pool);
  impl->slots.resize(options.queue_depth);
  PCIM_ASSIGN_OR_RETURN(impl->workers,
                        CopyWorkers::create(options.copy_threads));
  // CQEs signal the same eventfd as finished copies: the ring's thread
  // waits on one descriptor for both.
  r = io_uring_register_eventfd(&impl->ring, impl->workers->done_fd());
  if (r < 0) return sys_error(r, "io_uring_register_eventfd failed");
  return std::unique_ptr<UringEngine>(new UringEngine(std::move(impl)));
}

Result<TransferStats> UringEngine::write(std::span<const DeviceExtent> extents,
                                         uint64_t length_bytes,
                                         WriteSource& source) {
  const WriteJob job{extents, length_bytes, &source};
  return write(std::span<const WriteJob>(&job, 1));
}

Result<TransferStats> UringEngine::write(std::span<const WriteJob> jobs) {
  Impl& m = *impl_;
  PCIM_TRY(m.usable());
  const uint32_t lbs = m.device->logical_block_size();
  std::vector<ChunkCursor> cursors;
  cursors.reserve(jobs.size());
  for (const WriteJob& j : jobs) {
    const uint64_t aligned = (j.length_bytes + lbs - 1) / lbs * lbs;
    PCIM_TRY(m.check_extents(j.extents, aligned));
    cursors.emplace_back(j.extents, j.length_bytes, aligned, m.options.io_size_bytes);
  }
  Op op;
  op.is_write = true;
  TransferStats& stats = op.stats;
  size_t job = 0;  // the job whose chunks are being prepared
  // One source's part of a request: filled (and zero-padded up to
  // io_bytes) at `dst`, or observed there when `direct`.
  struct Piece {
    WriteSource* source;
    uint64_t mirror_offset_bytes;
    std::byte* dst;
    uint32_t data_bytes, io_bytes;
    bool direct;
  };
  // Slots whose requests ended give back their buffers.
  auto take_finished = [&] {
    for (size_t i : op.finished) {
      Slot& s = m.slots[i];
      if (s.buffer >= 0) m.pool->release(static_cast<unsigned>(s.buffer));
      s.in_use = false;
    }
    op.finished.clear();
  };
  // Copies that finished: their requests go to the ring, or, after an
  // error, their slots and buffers are freed.
  std::vector<CopyWorkers::Done> done;
  auto take_copies = [&] {
    done.clear();
    m.workers->take_done(done);
    for (CopyWorkers::Done& d : done) {
      const size_t i = static_cast<size_t>(d.id);
      Slot& s = m.slots[i];
      s.copying = false;
      if (!d.status.ok() && op.err.ok()) op.err = std::move(d.status);
      if (op.err.ok() && !m.broken) {
        ++stats.requests;
        Status q = m.queue(i, true);
        if (q.ok()) continue;   // in flight: the CQE frees it
        op.err = std::move(q);  // no SQE was prepared: ours to free
      }
      if (s.buffer >= 0) m.pool->release(static_cast<unsigned>(s.buffer));
      s.in_use = false;
    }
  };
  // Prepares chunks while slots and buffers are free, and hands each to a
  // copy worker.
  auto dispatch = [&] {
    while (job < jobs.size() && cursors[job].done()) ++job;
    while (op.err.ok() && !m.broken && job < jobs.size()) {
      int si = m.free_slot();
      if (si < 0) break;
      ChunkCursor& cursor = cursors[job];
      WriteSource& source = *jobs[job].source;
      // Peek: a chunk needing a buffer waits until one is free.
      ChunkCursor saved = cursor;
      Chunk c = cursor.next();
      std::byte* p = nullptr;
      int buffer = -1;
      if (c.data_bytes == c.io_bytes) {
        const std::byte* d = source.direct(c.mirror_offset_bytes, c.io_bytes);
        if (d && reinterpret_cast<uintptr_t>(d) % m.device->memory_alignment() == 0)
          p = const_cast<std::byte*>(d);
      }
      std::vector<Piece> pieces;
      if (!p) {
        buffer = m.pool->acquire();
        if (buffer < 0) {
          cursor = saved;
          break;
        }
        p = m.pool->buffer(static_cast<unsigned>(buffer));
        pieces.push_back({&source, c.mirror_offset_bytes, p, c.data_bytes,
                          c.io_bytes, false});
        stats.bytes_bounced += c.data_bytes;
        // Gather: chunks that continue on the device right after this one
        // (the next slice's copy, laid out behind this one at format) join
        // the same buffer, so many small slices go out as few large
        // requests. Only chunks that would be bounced anyway join.
        while (c.io_bytes < m.pool->buffer_bytes()) {
          size_t j = job;
          while (j < jobs.size() && cursors[j].done()) ++j;
          if (j == jobs.size()) break;
          ChunkCursor peek = cursors[j];
          Chunk n = peek.next();
          if (n.device_offset_bytes != c.device_offset_bytes + c.io_bytes ||
              c.io_bytes + n.io_bytes > m.pool->buffer_bytes())
            break;
          if (n.data_bytes == n.io_bytes &&
              jobs[j].source->direct(n.mirror_offset_bytes, n.io_bytes))
            break;
          pieces.push_back({jobs[j].source, n.mirror_offset_bytes,
                            p + c.io_bytes, n.data_bytes, n.io_bytes, false});
          stats.bytes_bounced += n.data_bytes;
          cursors[j] = peek;
          job = j;
          c.io_bytes += n.io_bytes;
          c.data_bytes = c.io_bytes;  // no longer used for writes
          ++stats.gathered;
        }
      } else {
        pieces.push_back({&source, c.mirror_offset_bytes, p, c.data_bytes,
                          c.io_bytes, true});
        stats.bytes_direct += c.data_bytes;
      }
      Slot& s = m.slots[static_cast<size_t>(si)];
      s = Slot{c, p, buffer};
      s.in_use = true;
      s.copying = true;
      // The worker owns the buffer until the engine takes its Done.
      m.workers->post(
          static_cast<uint64_t>(si), [pieces = std::move(pieces)]() -> Status {
            for (const Piece& x : pieces) {
              if (!x.direct) {
                PCIM_TRY(
                    x.source->fill(x.mirror_offset_bytes, x.dst, x.data_bytes));
                if (x.data_bytes < x.io_bytes)
                  std::memset(x.dst + x.data_bytes, 0,
                              x.io_bytes - x.data_bytes);
              }
              x.source->observe(x.mirror_offset_bytes, x.dst, x.data_bytes);
            }
            return {};
          });
      while (job < jobs.size() && cursors[job].done()) ++job;
    }
  };
  while (true) {
    dispatch();
    take_copies();
    m.submit_pending(op);  // one io_uring_enter for what the copies readied
    take_finished();
    const bool more = op.err.ok() && !m.broken && job < jobs.size();
    // Returns only when no request is in flight and no copy runs, or the
    // engine is broken (whose slots in flight are never freed) and no copy
    // runs.
    if (m.workers->outstanding() == 0 &&
        ((m.in_flight == 0 && !more) || m.broken))
      break;
    if (more && m.free_slot() >= 0 && m.pool->free_count() > 0) continue;
    m.wait_progress(op);
    take_finished();
  }
  if (!op.err.ok()) return op.err.take_error();
  if (m.broken) return *m.broken;
  return stats;
}

Result<TransferStats> UringEngine::read(std::span<const DeviceExtent> extents,
                                        uint64_t length_bytes,
                                        const ReadSink& sink,
                                        ReadFailure* failure) {
  Impl& m = *impl_;
  PCIM_TRY(m.usable());
  const uint32_t lbs = m.device->logical_block_size();
  const uint64_t aligned = (length_bytes + lbs - 1) / lbs * lbs;
  PCIM_TRY(m.check_extents(extents, aligned));
  Op op;
  op.is_write = false;
  TransferStats& stats = op.stats;
  ChunkCursor cursor(extents, length_bytes, aligned, m.options.io_size_bytes);
  // Of the sinks that failed, the one at the lowest mirror offset wins, so
  // that the error does not depend on the workers' timing.
  std::optional<uint64_t> sink_error_at;
  bool device_error = false;  // op.err came from the device or the ring
  // Queues reads while slots and buffers are free, and submits them at once.
  auto refill = [&] {
    while (op.err.ok() && !m.broken && !cursor.done()) {
      int si = m.free_slot();
      if (si < 0) break;
      int buffer = m.pool->acquire();
      if (buffer < 0) break;
      Chunk c = cursor.next();
      Slot& s = m.slots[static_cast<size_t>(si)];
      s = Slot{c, m.pool->buffer(static_cast<unsigned>(buffer)), buffer};
      s.in_use = true;
      ++stats.requests;
      stats.bytes_bounced += c.data_bytes;
      if (Status q = m.queue(static_cast<size_t>(si), false); !q.ok()) {
        // No SQE was prepared: the slot is not in flight, ours to free.
        op.err = q;
        m.pool->release(static_cast<unsigned>(buffer));
        s.in_use = false;
        break;
      }
    }
    m.submit_pending(op);
  };
  auto free_slot = [&](Slot& s) {
    m.pool->release(static_cast<unsigned>(s.buffer));
    s.in_use = false;
  };
  // Reads that ended: a complete one goes to a copy worker's sink, while
  // the device keeps reading into the other buffers; any other is freed.
  auto take_finished = [&] {
    for (size_t i : op.finished) {
      Slot& s = m.slots[i];
      if (!op.err.ok() || !s.complete) {
        free_slot(s);
        continue;
      }
      s.copying = true;
      const Chunk c = s.chunk;
      const std::byte* data = s.data;
      m.workers->post(i, [&sink, c, data]() -> Status {
        return sink(c.mirror_offset_bytes, data, c.data_bytes);
      });
    }
    op.finished.clear();
  };
  std::vector<CopyWorkers::Done> done;
  auto take_copies = [&] {
    done.clear();
    m.workers->take_done(done);
    for (CopyWorkers::Done& d : done) {
      Slot& s = m.slots[static_cast<size_t>(d.id)];
      s.copying = false;
      if (!d.status.ok()) {
        const uint64_t at = s.chunk.mirror_offset_bytes;
        if (op.err.ok() ||
            (!device_error && sink_error_at && at < *sink_error_at)) {
          op.err = std::move(d.status);
          sink_error_at = at;
        }
      }
      free_slot(s);
    }
  };
  while (true) {
    refill();
    take_finished();
    take_copies();
    if (!op.err.ok() && !sink_error_at) device_error = true;
    if (m.workers->outstanding() == 0 &&
        ((m.in_flight == 0 && (cursor.done() || !op.err.ok())) || m.broken))
      break;
    if (op.err.ok() && !m.broken && !cursor.done() && m.free_slot() >= 0 &&
        m.pool->free_count() > 0)
      continue;
    m.wait_progress(op);
    if (!op.err.ok() && !sink_error_at) device_error = true;
  }
  if (!op.err.ok()) {
    if (failure && op.failure.known) *failure = op.failure;
    return op.err.take_error();
  }
  if (m.broken) return *m.broken;
  return stats;
}

Status UringEngine::flush() {
  Impl& m = *impl_;
  PCIM_TRY(m.usable());
  io_uring_sqe* sqe = io_uring_get_sqe(&m.ring);
  if (!sqe) return make_error(EBUSY, "io_uring submission queue full");
  io_uring_prep_fsync(sqe, m.device->fd(), IORING_FSYNC_DATASYNC);
  m.flush_tag = m.next_tag(kFlushIndex);
  io_uring_sqe_set_data64(sqe, m.flush_tag);
  m.flush_in_flight = true;
  ++m.in_flight;
  // Waits for the fsync's own CQE; any other is an error (handled by pump).
  Op op;
  while (m.flush_in_flight && !m.broken) m.pump(op, true);
  if (!op.err.ok()) return op.err.take_error();
  if (m.broken) return *m.broken;
  if (m.flush_result < 0)
    return sys_error(m.flush_result,
                     "flush of " + m.device->path() + " failed");
  return {};
}

Status UringEngine::inject_stray_completion_for_testing(uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&impl_->ring);
  if (!sqe) return make_error(EBUSY, "io_uring submission queue full");
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, user_data);
  int r = io_uring_submit(&impl_->ring);
  if (r < 0) return sys_error(r, "io_uring submit");
  return {};
}

}  // namespace pcimirror
