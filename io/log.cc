#include "io/log.h"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>

namespace pcimirror {
namespace {
std::atomic<bool> g_syslog{false};
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;
}  // namespace

void log_to_syslog(bool enable) {
  if (enable) ::openlog("pcimirror", LOG_PID, LOG_DAEMON);
  g_syslog = enable;
}

void set_log_level(LogLevel max_level) { g_level = static_cast<int>(max_level); }

void log(LogLevel level, const std::string& message) {
  if (static_cast<int>(level) > g_level) return;
  if (g_syslog) {
    ::syslog(static_cast<int>(level), "%s", message.c_str());
    return;
  }
  const char* tag = level == LogLevel::kError     ? "error"
                    : level == LogLevel::kWarning ? "warning"
                    : level == LogLevel::kInfo    ? "info"
                                                  : "debug";
  std::lock_guard lock(g_mu);
  // Under journald (stderr not a terminal) a "<N>" prefix carries the level,
  // see sd-daemon(3); a terminal gets plain text.
  static const bool tty = ::isatty(2);
  if (tty)
    std::fprintf(stderr, "pcimirror: %s: %s\n", tag, message.c_str());
  else
    std::fprintf(stderr, "<%d>pcimirror: %s: %s\n", static_cast<int>(level),
                 tag, message.c_str());
}

}  // namespace pcimirror
