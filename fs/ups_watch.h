// The UPS watch (mount option ups=, docs/DESIGN.md "UPS watch"): a thread
// that asks a NUT upsd (Network UPS Tools, through libupsclient) for the
// UPS's ups.status, battery.charge and battery.runtime once a second and
// acts on a power failure:
// - OB (on battery): mirrors every slice at once (one group commit), then
//   every `interval_ms` while on battery;
// - LB (low battery, while not OL) or FSD (forced shutdown): refuses writes
//   through the mount with EROFS (SliceFs::set_power_fail_read_only), then
//   takes a final mirror of every slice, so what the mirrors hold is what
//   memory holds when the system goes down;
// - OL again (without LB or FSD): writes are accepted again.
// A upsd that cannot be reached, or that does not know the UPS, makes the
// UPS state `unreachable`: logged, an event, shown by status, and asked
// again at every poll. Each poll also recomputes the protection state
// (assess_protection()) and publishes it as the root xattr
// user.pcimirror.protection (SliceFs::set_protection).
//
// No NUT header here: libupsclient stays in ups_watch.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

#include "fs/events.h"
#include "fs/memory_guard.h"
#include "io/mutex.h"
#include "io/result.h"
#include "io/thread_annotations.h"

namespace pcimirror {

class SliceFs;
class MirrorEngine;

/// NUT's default upsd port (upsd.conf(5) LISTEN).
constexpr uint16_t kNutDefaultPort = 3493;
/// How often the watch asks upsd, in milliseconds (pcimirror(8), "UPS").
constexpr uint64_t kUpsPollMs = 1000;

/// The UPS of ups=UPSNAME@HOST[:PORT].
struct UpsTarget {
  std::string ups;   ///< the UPS's name in upsd's ups.conf
  std::string host;  ///< host name or address of upsd
  uint16_t port = kNutDefaultPort;
  /// "UPSNAME@HOST:PORT".
  std::string to_string() const;
};

/// Parses "UPSNAME@HOST[:PORT]" (an IPv6 address as [ADDR]). EINVAL naming
/// the option for a missing name or host or a bad port. Thread-safe.
Result<UpsTarget> parse_ups_target(const std::string& text);

/// What the protection state is computed from (one poll).
struct ProtectionInput {
  bool ups_configured = false;
  bool ups_reachable = false;
  std::string unreachable_why;      ///< when not reachable
  std::string ups_status;           ///< e.g. "OL", "OB LB"
  std::optional<double> runtime_s;  ///< battery.runtime, seconds
  uint64_t save_bytes = 0;          ///< bytes a save must write
  double mb_per_s = 0;              ///< measured (MB = 10^6 B); 0: unknown
  std::string last_sync_error;      ///< "" when the last mirror succeeded
  MemoryState memory = MemoryState::kOk;
  std::string memory_message;
  double margin = 2.0;  ///< ups_margin=
};

/// The protection state (issue 15 item 2).
struct Protection {
  /// "protected", "unprotected" or "no UPS".
  std::string state;
  /// Why not protected (or, when protected, the fit); "" never.
  std::string reason;
  /// save_bytes / mb_per_s, seconds; unset before any measurement.
  std::optional<double> estimate_s;
};

/// protected when estimate x margin <= battery.runtime, the last mirror
/// succeeded and the memory guard says ok; unprotected with the first
/// failing reason otherwise (UPS unreachable, no battery.runtime, no
/// measurement yet, the estimate too long, a failed mirror, the device or
/// canary); "no UPS" without ups=. Pure; thread-safe.
Protection assess_protection(const ProtectionInput& in);

struct UpsWatchOptions {
  UpsTarget target;
  /// Mirror period while on battery (ups_interval=), milliseconds, > 0.
  uint64_t interval_ms = 30000;
  /// Safety factor on the save estimate (ups_margin=), >= 1.
  double margin = 2.0;
  /// Poll period, milliseconds (kUpsPollMs; tests may shorten it).
  uint64_t poll_ms = kUpsPollMs;
  /// Where UPS and protection events go; none when null. Must outlive the
  /// watch.
  EventLog* events = nullptr;
};

/// The watch thread. RAII: the constructor starts it, the destructor stops
/// and joins it (after a mirror or a upsd request in flight: at most the
/// 2 s connect or 5 s read timeout of libupsclient); a stopped watch
/// leaves SliceFs's power-fail switch as it was. A final mirror that fails
/// is tried again at every poll until it commits or the UPS is back
/// online. `fs` and `engine` must outlive it.
class UpsWatch {
 public:
  UpsWatch(SliceFs& fs, MirrorEngine& engine, UpsWatchOptions options);
  ~UpsWatch();
  UpsWatch(const UpsWatch&) = delete;
  UpsWatch& operator=(const UpsWatch&) = delete;

 private:
  struct Poll;
  void run() EXCLUDES(mu_);
  // One upsd round trip: fills `p` (reachable, status, charge, runtime).
  void poll(Poll& p);
  // Acts on the UPS status of `p`: mirrors, the power-fail switch, events.
  void act(const Poll& p);
  // Recomputes and publishes the protection state; events on a change.
  void publish(const Poll& p);
  // sync_batch of every slice, logged; true when committed.
  bool mirror_all(const std::string& why);
  void emit(EventType type, const std::string& message, const Poll& p);
  void disconnect();

  SliceFs& fs_;
  MirrorEngine& engine_;
  const UpsWatchOptions options_;
  // The libupsclient connection (UPSCONN_t), used by the watch thread only.
  void* conn_ = nullptr;
  bool connected_ = false;
  // Watch-thread state (no other thread touches it).
  bool reachable_ = true;  // false after a failed poll, until a good one
  bool first_poll_ = true;
  bool on_battery_ = false;   // OB seen and not yet back to OL
  bool low_battery_ = false;  // LB seen (event sent)
  bool forced_ = false;       // FSD seen (event sent)
  bool power_fail_ = false;   // LB or FSD acted on: writes refused
  bool final_done_ = false;   // the final mirror after it was committed
  std::chrono::steady_clock::time_point next_mirror_{};
  std::string last_state_;  // the last published protection state

  Mutex mu_;
  CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace pcimirror
