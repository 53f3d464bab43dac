// The copy stage of the io_uring engine (docs/DESIGN.md, "The copy
// stage"): a fixed pool of worker threads that run the engine's copies and
// checksums (region -> bounce buffer for a mirror, bounce buffer -> region
// for a restore), so that the thread driving the ring only prepares,
// submits and reaps requests and never waits for a copy.
//
// Each task carries a 64-bit id. A finished task's id and Status go onto a
// done list, and an eventfd (done_fd()) is signalled, which the engine also
// registers with its ring (io_uring_register_eventfd(3)): the ring thread
// blocks on that one descriptor and wakes for either a CQE or a finished
// copy. A task that throws finishes with an error (ENOMEM for bad_alloc,
// EIO otherwise) naming the exception: no exception leaves a worker.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "io/mutex.h"
#include "io/result.h"
#include "io/thread_annotations.h"
#include "io/unique_fd.h"

namespace pcimirror {

class CopyWorkers {
 public:
  using Task = std::function<Status()>;
  struct Done {
    uint64_t id = 0;
    Status status;
  };

  /// Starts `threads` workers (1 to 64). Errors: EINVAL for a count out of
  /// range, the errno of eventfd(2) or of a thread that cannot start
  /// (EAGAIN); then no worker is left running.
  static Result<std::unique_ptr<CopyWorkers>> create(unsigned threads);
  /// Stops the workers after the tasks queued ran, and joins them.
  ~CopyWorkers();
  CopyWorkers(const CopyWorkers&) = delete;
  CopyWorkers& operator=(const CopyWorkers&) = delete;

  unsigned threads() const { return static_cast<unsigned>(threads_.size()); }

  /// Queues `task` under `id`; one worker runs it. Thread-safe.
  void post(uint64_t id, Task task) EXCLUDES(mu_);
  /// Appends the tasks finished so far to `out`, without blocking, and
  /// returns how many. Thread-safe.
  size_t take_done(std::vector<Done>& out) EXCLUDES(mu_);
  /// True when a finished task waits on the done list. Thread-safe.
  bool has_done() const EXCLUDES(mu_);
  /// Tasks posted whose Done was not taken yet. Thread-safe.
  size_t outstanding() const EXCLUDES(mu_);
  /// An eventfd (EFD_CLOEXEC) written once per finished task.
  int done_fd() const { return done_fd_.get(); }
  /// Blocks until done_fd() was written since the last call (or a CQE was
  /// posted, when the fd is registered with a ring), then resets it.
  void wait_event() const;

 private:
  CopyWorkers() = default;
  void run() EXCLUDES(mu_);

  UniqueFd done_fd_;
  mutable Mutex mu_;
  CondVar work_cv_;
  std::deque<std::pair<uint64_t, Task>> queue_ GUARDED_BY(mu_);
  std::vector<Done> done_ GUARDED_BY(mu_);
  size_t outstanding_ GUARDED_BY(mu_) = 0;
  bool stopping_ GUARDED_BY(mu_) = false;
  // Started in create(), joined in the destructor; not touched in between.
  std::vector<std::thread> threads_;
};

}  // namespace pcimirror
