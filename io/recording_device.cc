#include "io/recording_device.h"

namespace pcimirror {

int64_t RecordingDevice::on_write(uint64_t offset_bytes, const std::byte* data,
                                  uint64_t, int64_t result) {
  if (result > 0) {
    MutexLock lock(mu_);
    log_.push_back(Op{Op::kWrite, offset_bytes,
                      std::vector<std::byte>(data, data + result)});
  }
  return result;
}

int RecordingDevice::on_flush(int result) {
  if (result == 0) {
    MutexLock lock(mu_);
    log_.push_back(Op{Op::kFlush, 0, {}});
  }
  return result;
}

std::vector<RecordingDevice::Op> RecordingDevice::log() const {
  MutexLock lock(mu_);
  return log_;
}

void RecordingDevice::clear() {
  MutexLock lock(mu_);
  log_.clear();
}

}  // namespace pcimirror
