#include "fs/memory_guard.h"

#include <sys/random.h>

#include <algorithm>
#include <array>

#include "io/log.h"

namespace pcimirror {

const char* to_string(MemoryState s) {
  switch (s) {
    case MemoryState::kOk:
      return "ok";
    case MemoryState::kDeviceLost:
      return "device-lost";
    case MemoryState::kMemoryReset:
      return "memory-reset";
  }
  return "unknown";
}

Result<CanaryRecord> fresh_canary(uint64_t offset_bytes) {
  CanaryRecord c;
  c.offset_bytes = offset_bytes;
  if (getrandom(c.nonce.data(), c.nonce.size(), 0) !=
      static_cast<ssize_t>(c.nonce.size()))
    return errno_error("getrandom failed while choosing a canary nonce");
  return c;
}

MemoryGuard::MemoryGuard(const Superblock& sb, Region& region)
    : sb_(sb), region_(region) {}

Result<bool> MemoryGuard::canary_matches(const CanaryRecord& c) const {
  // Reading nothing proves nothing: a region that does not reach the
  // canary is not memory that was reset (that state is sticky, and
  // renew_canary() could not clear it with the canary out of reach).
  if (!region_.contains(c.offset_bytes, kCanaryBytes))
    return make_error(
        EINVAL, "the canary at byte " + std::to_string(c.offset_bytes) +
                    " lies beyond the " + std::to_string(region_.size_bytes()) +
                    " bytes of " + region_.name() +
                    ", so pcimirror cannot tell whether the memory was "
                    "reset; serve the whole region (size= of the memory "
                    "spec, or the full BAR), or move the canary inside it "
                    "with 'pcimirror canary DEVICE OFFSET'");
  std::array<uint8_t, kCanaryBytes> now{};
  if (Status s = region_.copy_from(c.offset_bytes, now.data(), now.size());
      !s.ok()) {
    Error err = s.take_error();
    err.message = "reading the canary at byte " +
                  std::to_string(c.offset_bytes) + " of " + region_.name() +
                  " failed: " + err.message;
    return err;
  }
  return now == encode_canary(sb_, c);
}

Status MemoryGuard::write_canary(const CanaryRecord& c) {
  if (!region_.contains(c.offset_bytes, kCanaryBytes))
    return make_error(EINVAL, "the canary at byte " +
                                  std::to_string(c.offset_bytes) +
                                  " lies outside " + region_.name());
  const auto bytes = encode_canary(sb_, c);
  if (Status s = region_.copy_to(c.offset_bytes, bytes.data(), bytes.size());
      !s.ok()) {
    Error err = s.take_error();
    err.message = "writing the canary at byte " +
                  std::to_string(c.offset_bytes) + " of " + region_.name() +
                  " failed: " + err.message;
    return err;
  }
  PCIM_ASSIGN_OR_RETURN(const bool matches, canary_matches(c));
  if (!matches)
    return make_error(EIO, "the canary written at byte " +
                               std::to_string(c.offset_bytes) + " of " +
                               region_.name() +
                               " does not read back: the device dropped the "
                               "write; check that the board is healthy");
  return {};
}

Status MemoryGuard::transition(MemoryState to, const std::string& msg) {
  const MemoryState from = state_.load(std::memory_order_relaxed);
  if (from != to) {
    if (to == MemoryState::kOk)
      log_info("memory of " + region_.name() + ": " + to_string(from) +
               " -> ok: " + msg);
    else
      log_error("memory of " + region_.name() + ": " + to_string(from) +
                " -> " + to_string(to) + ": " + msg);
  }
  message_ = to == MemoryState::kOk ? std::string() : msg;
  state_.store(to, std::memory_order_release);
  if (from != to && observer_) observer_(from, to, msg);
  if (to == MemoryState::kOk) return {};
  return make_error(EIO, msg);
}

Status MemoryGuard::check_device(const std::string& what) {
  MutexLock lock(mu_);
  Status d = region_.check_device();
  // A reset stays pending through a lost device: when it answers again the
  // state goes back to memory-reset, not to ok.
  if (!d.ok() &&
      state_.load(std::memory_order_relaxed) == MemoryState::kMemoryReset) {
    reset_pending_ = true;
    reset_message_ = message_;
  }
  if (!d.ok())
    return transition(MemoryState::kDeviceLost,
                      d.error().message + " (" + what +
                          "); nothing was committed and the mirrors on the "
                          "device are kept. pcimirror tries again at the "
                          "next sync; if the board was reset, restore "
                          "(pcimirror restore) once it answers");
  if (state_.load(std::memory_order_relaxed) == MemoryState::kDeviceLost) {
    if (reset_pending_)
      return transition(MemoryState::kMemoryReset,
                        "the device answers again, but " + reset_message_);
    return transition(MemoryState::kOk,
                      "the device answers again (" + what + ")");
  }
  return {};
}

Status MemoryGuard::check(const CanaryRecord* canary, const std::string& what) {
  PCIM_TRY(check_device(what));
  MutexLock lock(mu_);
  if (!canary) {
    canary_state_ = "none";
    return {};
  }
  const std::string at = "the canary at byte " +
                         std::to_string(canary->offset_bytes) + " of " +
                         region_.name();
  const std::string remedy =
      "; nothing was committed, and mirrors stay refused so that the "
      "mirrors of the last good state are kept. Put them back with "
      "'pcimirror restore DEVICE' (unmounted) or mount -o restore=on_mount; "
      "or, if the memory as it is now is the truth, run 'pcimirror sync "
      "MOUNTPOINT --accept-memory'";
  if (state_.load(std::memory_order_relaxed) == MemoryState::kMemoryReset)
    return make_error(EIO, message_ + " (still refused " + what + ")");
  // A failed read of the canary (a DMA error) says nothing about the
  // memory: the check fails with it, the state stays as it was.
  auto matches = canary_matches(*canary);
  if (!matches.ok()) {
    Error err = matches.take_error();
    err.message += " (" + what + "); nothing was committed";
    return err;
  }
  if (*matches) {
    canary_state_ = "ok";
    return {};
  }
  // A device that stopped decoding between the two checks reads all ones:
  // that is a lost device, not reset memory.
  if (Status d = region_.check_device(); !d.ok())
    return transition(MemoryState::kDeviceLost,
                      d.error().message + " (" + what +
                          "); nothing was committed and the mirrors on the "
                          "device are kept");
  canary_state_ = "mismatch";
  return transition(MemoryState::kMemoryReset,
                    "memory was reset or reloaded since pcimirror last knew "
                    "it: " +
                        at +
                        " does not hold the nonce recorded in the metadata (a "
                        "power cycle, a board reset or an FPGA reload) (" +
                        what + ")" + remedy);
}

void MemoryGuard::reset_to_ok(const std::string& why) {
  MutexLock lock(mu_);
  reset_pending_ = false;
  canary_state_ = "ok";
  const MemoryState from = state_.load(std::memory_order_relaxed);
  (void)transition(MemoryState::kOk, why);
  // A new canary is news even when the state was ok (an accept at mount,
  // before any check): the observer hears of it either way.
  if (from == MemoryState::kOk && observer_) observer_(from, from, why);
}

std::string MemoryGuard::message() const {
  MutexLock lock(mu_);
  return message_;
}

std::string MemoryGuard::canary_state() const {
  MutexLock lock(mu_);
  return canary_state_;
}

}  // namespace pcimirror
