// Leveled logging. On stderr: under systemd's journal (JOURNAL_STREAM names
// stderr) each line starts with the "<N>" priority prefix of sd-daemon(3);
// anywhere else (a terminal, a pipe, a file) it reads
// "pcimirror: LEVEL: message". Once a daemon detached from its terminal,
// lines go to syslog instead.
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

/// True when file descriptor `fd` is the journal's stream: the environment
/// variable JOURNAL_STREAM ("DEVICE:INODE", both decimal, set by systemd for
/// a service whose output goes to the journal; systemd.exec(5)) names the
/// device and inode that fstat(2) reports for `fd`. False when the variable
/// is unset or malformed, or `fd` is something else (a terminal, a pipe of
/// a child that inherited the variable, a redirection).
bool is_journal_stream(int fd);

}  // namespace pcimirror
