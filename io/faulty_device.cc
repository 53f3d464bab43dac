#include "io/faulty_device.h"

#include <cerrno>

namespace pcimirror {

int64_t FaultyDevice::on_write(uint64_t, const std::byte*,
                               uint64_t length_bytes, int64_t result) {
  if (!hit() || result < 0) return result;
  if (fault_ == Fault::kShortWrite && length_bytes >= 1024)
    return static_cast<int64_t>(length_bytes / 2 / 512 * 512);
  return fault_ == Fault::kNone ? result : -EIO;
}

int64_t FaultyDevice::on_read(uint64_t offset_bytes, uint64_t length_bytes,
                              int64_t result) {
  const bool armed = hit();
  if (result < 0) return result;
  {
    std::lock_guard lock(mu_);
    for (auto [begin, end] : unreadable_)
      if (offset_bytes < end && begin < offset_bytes + length_bytes) {
        ++unreadable_hits_;
        return -EIO;
      }
  }
  return armed && fault_ == Fault::kEio ? -EIO : result;
}

int FaultyDevice::on_flush(int result) {
  if (!hit() || result < 0) return result;
  return fault_ == Fault::kEio ? -EIO : result;
}

int FaultyDevice::on_enter() {
  const int64_t n = enter_count_.fetch_add(1);
  const int64_t t = enter_target_;
  if (t < 0 || n < t || (n > t && !enter_sticky_)) return 0;
  enter_fired_ = true;
  return -enter_error_;
}

}  // namespace pcimirror
