// Records every write (with its data) and every flush in completion order,
// in the spirit of dm-log-writes (which this machine's kernel lacks), so
// tests can rebuild the device as it may be after a crash at any point.
#pragma once

#include <cstdint>
#include <vector>

#include "io/io_observer.h"
#include "io/mutex.h"
#include "io/thread_annotations.h"

namespace pcimirror {

class RecordingDevice final : public IoObserver {
 public:
  struct Op {
    enum Kind { kWrite, kFlush } kind;
    uint64_t offset_bytes = 0;  ///< kWrite
    std::vector<std::byte> data;  ///< kWrite: the bytes the device accepted
  };

  int64_t on_write(uint64_t offset_bytes, const std::byte* data,
                   uint64_t length_bytes, int64_t result) override;
  int64_t on_read(uint64_t, uint64_t, int64_t result) override { return result; }
  int on_flush(int result) override;

  /// The log so far (a copy), and clearing it.
  std::vector<Op> log() const;
  void clear();

 private:
  mutable Mutex mu_;
  std::vector<Op> log_ GUARDED_BY(mu_);
};

}  // namespace pcimirror
