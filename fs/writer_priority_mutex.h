// A shared mutex in which a waiting exclusive locker goes before new shared
// lockers: glibc's rwlock of kind PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP
// (pthread_rwlockattr_setkind_np(3)). std::shared_mutex on glibc prefers
// readers, so a steady stream of writes through the mount (each holding its
// slice shared) could keep a mirror, which needs the slice exclusively, from
// ever starting.
#pragma once

#include <pthread.h>

#include "io/thread_annotations.h"

namespace pcimirror {

/// Meets the SharedMutex requirements (std::unique_lock, std::shared_lock),
/// and io/mutex.h's WriterLock and ReaderLock take it; a capability for
/// clang's thread-safety analysis (GUARDED_BY(content) in fs/slice_fs.h).
/// Not recursive: a thread holding it shared must not lock it again while an
/// exclusive locker waits (that deadlocks by design of the kind).
class CAPABILITY("mutex") WriterPriorityMutex {
 public:
  WriterPriorityMutex() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&rw_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~WriterPriorityMutex() { pthread_rwlock_destroy(&rw_); }
  WriterPriorityMutex(const WriterPriorityMutex&) = delete;
  WriterPriorityMutex& operator=(const WriterPriorityMutex&) = delete;

  void Lock() ACQUIRE() { pthread_rwlock_wrlock(&rw_); }
  void Unlock() RELEASE() { pthread_rwlock_unlock(&rw_); }
  void ReaderLock() ACQUIRE_SHARED() { pthread_rwlock_rdlock(&rw_); }
  void ReaderUnlock() RELEASE_SHARED() { pthread_rwlock_unlock(&rw_); }

  // The std names, for std::unique_lock and std::shared_lock (which the
  // analysis does not follow).
  void lock() ACQUIRE() { Lock(); }
  bool try_lock() TRY_ACQUIRE(true) {
    return pthread_rwlock_trywrlock(&rw_) == 0;
  }
  void unlock() RELEASE() { Unlock(); }
  void lock_shared() ACQUIRE_SHARED() { ReaderLock(); }
  bool try_lock_shared() TRY_ACQUIRE_SHARED(true) {
    return pthread_rwlock_tryrdlock(&rw_) == 0;
  }
  void unlock_shared() RELEASE_SHARED() { ReaderUnlock(); }

 private:
  pthread_rwlock_t rw_;
};

}  // namespace pcimirror
