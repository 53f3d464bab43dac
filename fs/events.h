// Events: one JSON line per state change of a mounted volume (docs/DESIGN.md,
// "Events"; pcimirror(8) EVENTS). Each goes to the journal with a stable
// MESSAGE_ID per event type (sd_journal_send(3); the daemon's log, so
// syslog, when no journal runs) and to the volume's event file,
// /run/pcimirror/UUID.events, which `pcimirror events MOUNTPOINT` follows.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/mutex.h"
#include "io/thread_annotations.h"

namespace pcimirror {

/// The event types. Their names are the `event` field of the JSON line and
/// never change; each has its own MESSAGE_ID (event_message_id()).
enum class EventType {
  kDirtyShutdown,   ///< mount found the `mounted` mark of an unclean stop
  kDeviceLost,      ///< the device stopped answering (memory guard)
  kDeviceBack,      ///< it answers again
  kMemoryReset,     ///< the canary says memory was reset
  kMemoryAccepted,  ///< restore or accept recorded a new canary
  kSyncFailed,      ///< a mirror failed (first failure after a success)
  kSyncRecovered,   ///< a mirror succeeded again after failures
  kOnBattery,       ///< UPS status OB
  kLowBattery,      ///< UPS status LB
  kForcedShutdown,  ///< UPS status FSD
  kOnline,          ///< UPS status back to OL
  kUpsUnreachable,  ///< upsd cannot be reached or does not know the UPS
  kProtected,       ///< the protection state became protected
  kUnprotected,     ///< the protection state became unprotected
};
/// "dirty-shutdown", "device-lost", ...: the JSON `event` field.
const char* to_string(EventType t);
/// The stable MESSAGE_ID of type `t`: 32 lowercase hex digits, as
/// journalctl MESSAGE_ID= matches (systemd.journal-fields(7)).
const char* event_message_id(EventType t);
/// The syslog priority of `t`: LOG_ERR for failures and lost protection,
/// LOG_WARNING for battery events, LOG_INFO for recoveries.
int event_priority(EventType t);

/// Where the events of the volume with UUID `uuid` are appended.
std::string event_file_path(const std::string& uuid);

/// The event sink of one mounted volume. Thread-safe.
class EventLog {
 public:
  /// Events of volume `uuid` on `device` served at `mountpoint`. Creates
  /// /run/pcimirror (0755) and opens UUID.events for appending (0644); if
  /// that fails the events still reach the journal or log, and the error is
  /// logged once.
  EventLog(std::string uuid, std::string device, std::string mountpoint);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  /// Emits one event: `message` for people, `fields` as extra JSON string
  /// members (e.g. {"slice", "a"}). The JSON line carries time (ISO 8601
  /// UTC), time_ns, event, uuid, device, mountpoint, message and the
  /// fields. The event file is rotated to UUID.events.1 past 1 MiB.
  void emit(EventType type, const std::string& message,
            const std::vector<std::pair<std::string, std::string>>& fields =
                {}) EXCLUDES(mu_);

  /// The JSON line emit() would write (for tests).
  std::string format(EventType type, const std::string& message,
                     const std::vector<std::pair<std::string, std::string>>&
                         fields) const;

 private:
  void append(const std::string& line) REQUIRES(mu_);
  const std::string uuid_, device_, mountpoint_, path_;
  Mutex mu_;
  int fd_ GUARDED_BY(mu_) = -1;
};

}  // namespace pcimirror
