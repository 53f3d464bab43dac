// A shared mutex in which a waiting exclusive locker goes before new shared
// lockers: glibc's rwlock of kind PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP
// (pthread_rwlockattr_setkind_np(3)). std::shared_mutex on glibc prefers
// readers, so a steady stream of writes through the mount (each holding its
// slice shared) could keep a mirror, which needs the slice exclusively, from
// ever starting.
#pragma once

#include <pthread.h>

namespace pcimirror {

/// Meets the SharedMutex requirements (std::unique_lock, std::shared_lock).
/// Not recursive: a thread holding it shared must not lock it again while an
/// exclusive locker waits (that deadlocks by design of the kind).
class WriterPriorityMutex {
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

  void lock() { pthread_rwlock_wrlock(&rw_); }
  bool try_lock() { return pthread_rwlock_trywrlock(&rw_) == 0; }
  void unlock() { pthread_rwlock_unlock(&rw_); }
  void lock_shared() { pthread_rwlock_rdlock(&rw_); }
  bool try_lock_shared() { return pthread_rwlock_tryrdlock(&rw_) == 0; }
  void unlock_shared() { pthread_rwlock_unlock(&rw_); }

 private:
  pthread_rwlock_t rw_;
};

}  // namespace pcimirror
