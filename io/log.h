// Leveled logging to stderr (journald picks it up under systemd) or, once a
// daemon detached from its terminal, to syslog.
#pragma once

#include <string>

namespace pcimirror {

enum class LogLevel { kError = 3, kWarning = 4, kInfo = 6, kDebug = 7 };

void log_to_syslog(bool enable);
void set_log_level(LogLevel max_level);
void log(LogLevel level, const std::string& message);
inline void log_error(const std::string& m) { log(LogLevel::kError, m); }
inline void log_warning(const std::string& m) { log(LogLevel::kWarning, m); }
inline void log_info(const std::string& m) { log(LogLevel::kInfo, m); }
inline void log_debug(const std::string& m) { log(LogLevel::kDebug, m); }

}  // namespace pcimirror
