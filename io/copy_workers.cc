#include "io/copy_workers.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <new>
#include <system_error>

namespace pcimirror {

Result<std::unique_ptr<CopyWorkers>> CopyWorkers::create(unsigned threads) {
  if (threads < 1 || threads > 64)
    return make_error(EINVAL, "copy_threads must be between 1 and 64, got " +
                                  std::to_string(threads));
  std::unique_ptr<CopyWorkers> w(new CopyWorkers());
  w->done_fd_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!w->done_fd_.valid())
    return errno_error("cannot create the copy workers' eventfd");
  w->threads_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) {
    try {
      w->threads_.emplace_back([p = w.get()] { p->run(); });
    } catch (const std::system_error& e) {
      // The destructor stops and joins the workers already running.
      return make_error(e.code().value() ? e.code().value() : EAGAIN,
                        "cannot start copy worker " + std::to_string(i + 1) +
                            " of " + std::to_string(threads) + ": " + e.what() +
                            "; lower copy_threads");
    }
  }
  return w;
}

CopyWorkers::~CopyWorkers() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  work_cv_.NotifyAll();
  for (std::thread& t : threads_) t.join();
}

void CopyWorkers::post(uint64_t id, Task task) {
  {
    MutexLock lock(mu_);
    queue_.emplace_back(id, std::move(task));
    ++outstanding_;
  }
  work_cv_.NotifyOne();
}

size_t CopyWorkers::take_done(std::vector<Done>& out) {
  MutexLock lock(mu_);
  const size_t n = done_.size();
  for (Done& d : done_) out.push_back(std::move(d));
  done_.clear();
  outstanding_ -= n;
  return n;
}

bool CopyWorkers::has_done() const {
  MutexLock lock(mu_);
  return !done_.empty();
}

size_t CopyWorkers::outstanding() const {
  MutexLock lock(mu_);
  return outstanding_;
}

void CopyWorkers::wait_event() const {
  uint64_t v = 0;
  while (::read(done_fd_.get(), &v, sizeof v) < 0 && errno == EINTR) {
  }
}

void CopyWorkers::run() {
  while (true) {
    std::pair<uint64_t, Task> job;
    {
      MutexLock lock(mu_);
      while (queue_.empty() && !stopping_) work_cv_.Wait(mu_);
      if (queue_.empty()) return;  // stopping, nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Status s;
    try {
      s = job.second();
    } catch (const std::bad_alloc&) {
      s = make_error(ENOMEM, "a copy worker ran out of memory");
    } catch (const std::exception& e) {
      s = make_error(EIO, std::string("a copy worker failed: ") + e.what());
    } catch (...) {
      s = make_error(EIO, "a copy worker failed with an unknown exception");
    }
    job.second = nullptr;  // the task's captures go before its Done
    {
      MutexLock lock(mu_);
      done_.push_back(Done{job.first, std::move(s)});
    }
    const uint64_t one = 1;
    // Cannot fail short of a closed fd: the counter saturates only after
    // 2^64 - 2 unread events.
    while (::write(done_fd_.get(), &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
}

}  // namespace pcimirror
