#include "io/log.h"

#include <sys/stat.h>
#include <syslog.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "io/mutex.h"

namespace pcimirror {
namespace {
std::atomic<bool> g_syslog{false};
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
Mutex g_mu;  // one line at a time on stderr

const char* level_word(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "error";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kDebug:
      return "debug";
  }
  return "info";
}

// Parses one unsigned decimal number at `p` and advances past it; false if
// `p` does not start with a digit or the number overflows.
bool parse_decimal(const char*& p, uintmax_t& value) {
  if (*p < '0' || *p > '9') return false;
  value = 0;
  for (; *p >= '0' && *p <= '9'; ++p) {
    const auto digit = static_cast<uintmax_t>(*p - '0');
    if (value > (UINTMAX_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  return true;
}
}  // namespace

bool is_journal_stream(int fd) {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr) return false;
  uintmax_t dev = 0, ino = 0;
  const char* p = env;
  if (!parse_decimal(p, dev) || *p++ != ':' || !parse_decimal(p, ino) ||
      *p != '\0')
    return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  return static_cast<uintmax_t>(st.st_dev) == dev &&
         static_cast<uintmax_t>(st.st_ino) == ino;
}

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
  MutexLock lock(g_mu);
  // The journal takes the priority from a "<N>" prefix (sd-daemon(3)) and
  // adds the identifier itself; elsewhere a level word says it.
  if (is_journal_stream(2))
    std::fprintf(stderr, "<%d>%s\n", static_cast<int>(level), message.c_str());
  else
    std::fprintf(stderr, "pcimirror: %s: %s\n", level_word(level),
                 message.c_str());
}

}  // namespace pcimirror
