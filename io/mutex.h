// Locks that clang's thread-safety analysis can follow
// (io/thread_annotations.h): thin wrappers of std::mutex, std::shared_mutex and
// std::condition_variable, whose libstdc++ versions carry no annotations, and
// RAII guards for them. Same behaviour and cost as the std types; every lock in
// the project is one of these or fs/writer_priority_mutex.h (docs/DESIGN.md,
// "Locks and atomics").
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "io/thread_annotations.h"

namespace pcimirror {

class CondVar;

/// A std::mutex. Not recursive. Thread-safe.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  /// Tells the analysis the caller holds the lock (it checks nothing at run
  /// time: std::mutex does not know its owner).
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

  /// BasicLockable, for std::unique_lock where a lock is taken on one path
  /// only. The analysis does not follow std::unique_lock: prefer MutexLock.
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

/// A std::shared_mutex (on glibc, readers first: see
/// fs/writer_priority_mutex.h for one where a waiting writer goes first).
/// Thread-safe.
class CAPABILITY("mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  void ReaderLock() ACQUIRE_SHARED() { mu_.lock_shared(); }
  void ReaderUnlock() RELEASE_SHARED() { mu_.unlock_shared(); }
  void AssertHeld() const ASSERT_CAPABILITY(this) {}
  void AssertReaderHeld() const ASSERT_SHARED_CAPABILITY(this) {}

 private:
  std::shared_mutex mu_;
};

/// Holds a Mutex for its scope; Unlock() and Lock() let it go and take it
/// again in between (the destructor unlocks only if held).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
  ~MutexLock() RELEASE() {
    if (held_) mu_.Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // The analysis tracks these through the guard, not through mu_.
  void Unlock() RELEASE() NO_THREAD_SAFETY_ANALYSIS {
    mu_.Unlock();
    held_ = false;
  }
  void Lock() ACQUIRE() NO_THREAD_SAFETY_ANALYSIS {
    mu_.Lock();
    held_ = true;
  }

 private:
  Mutex& mu_;
  bool held_ = true;
};

/// Holds `M` (SharedMutex, WriterPriorityMutex) exclusively for its scope.
template <class M>
class SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(M& mu) ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
  ~WriterLock() RELEASE() { mu_.Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  M& mu_;
};

/// Holds `M` (SharedMutex, WriterPriorityMutex) shared for its scope.
template <class M>
class SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(M& mu) ACQUIRE_SHARED(mu) : mu_(mu) { mu_.ReaderLock(); }
  ~ReaderLock() RELEASE() { mu_.ReaderUnlock(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  M& mu_;
};

/// A std::condition_variable for a Mutex. The caller holds the Mutex around
/// each wait and rechecks its condition in a loop (wake-ups may be
/// spurious); a predicate lambda would hide the guarded reads from the
/// analysis. Thread-safe.
class CondVar {
 public:
  /// Unlocks `mu`, waits for a notify, locks `mu` again.
  void Wait(Mutex& mu) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();  // still held: the caller's
  }
  /// As Wait(), until `deadline` at the latest; std::cv_status::timeout
  /// when it passed.
  template <class Clock, class Duration>
  std::cv_status WaitUntil(
      Mutex& mu, const std::chrono::time_point<Clock, Duration>& deadline)
      REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    const std::cv_status status = cv_.wait_until(lock, deadline);
    lock.release();
    return status;
  }
  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace pcimirror
