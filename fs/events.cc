#include "fs/events.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "io/log.h"

namespace pcimirror {
namespace {

struct TypeInfo {
  EventType type;
  const char* name;
  const char* message_id;
  int priority;
};

// MESSAGE_IDs are random and fixed forever (systemd.journal-fields(7)).
constexpr TypeInfo kTypes[] = {
    {EventType::kDirtyShutdown, "dirty-shutdown",
     "a1cf418996694c0391aa616ed94de936", LOG_WARNING},
    {EventType::kDeviceLost, "device-lost", "c715563c77c74854baebd8a32ae72005",
     LOG_ERR},
    {EventType::kDeviceBack, "device-back", "77b70080b9cd4d75bfdd7501d7409fbe",
     LOG_INFO},
    {EventType::kMemoryReset, "memory-reset",
     "cac8aa3bba3542209525a4e3f53ae347", LOG_ERR},
    {EventType::kMemoryAccepted, "memory-accepted",
     "36cb991086a34a9dac148f68e4889bc8", LOG_INFO},
    {EventType::kSyncFailed, "sync-failed", "24aee599dd384d9bacac8ab37c743bc6",
     LOG_ERR},
    {EventType::kSyncRecovered, "sync-recovered",
     "1ff16daedacd4e91a7709707155bfb3a", LOG_INFO},
    {EventType::kOnBattery, "on-battery", "f139fafff9d54ceab05722ea4091be66",
     LOG_WARNING},
    {EventType::kLowBattery, "low-battery", "3ce50f7fabc5483592f7ef7a3821032e",
     LOG_WARNING},
    {EventType::kForcedShutdown, "forced-shutdown",
     "6a17c6de895c4f37a33490853963758e", LOG_WARNING},
    {EventType::kOnline, "online", "bab9466132d34bb68b6cc69bb404922f",
     LOG_INFO},
    {EventType::kUpsUnreachable, "ups-unreachable",
     "abcea53c36f043e680a45cf92034bac5", LOG_ERR},
    {EventType::kProtected, "protected", "92962a10664f4288af0907b6a0451222",
     LOG_INFO},
    {EventType::kUnprotected, "unprotected",
     "b6b072db61c44a86bb3d25e97b18c93d", LOG_ERR},
};

const TypeInfo& info(EventType t) {
  for (const TypeInfo& i : kTypes)
    if (i.type == t) return i;
  return kTypes[0];
}

constexpr off_t kRotateBytes = 1 << 20;
constexpr const char* kRunDir = "/run/pcimirror";

}  // namespace

const char* to_string(EventType t) { return info(t).name; }
const char* event_message_id(EventType t) { return info(t).message_id; }
int event_priority(EventType t) { return info(t).priority; }

std::string event_file_path(const std::string& uuid) {
  return std::string(kRunDir) + "/" + uuid + ".events";
}

EventLog::EventLog(std::string uuid, std::string device, std::string mountpoint)
    : uuid_(std::move(uuid)),
      device_(std::move(device)),
      mountpoint_(std::move(mountpoint)),
      path_(event_file_path(uuid_)) {
  MutexLock lock(mu_);
  if (::mkdir(kRunDir, 0755) != 0 && errno != EEXIST)
    log_warning("events of " + device_ + " go to the journal only: cannot "
                "create " + kRunDir + " (" + std::strerror(errno) + ")");
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0)
    log_warning("events of " + device_ + " go to the journal only: cannot "
                "open " + path_ + " (" + std::strerror(errno) + ")");
}

EventLog::~EventLog() {
  MutexLock lock(mu_);
  if (fd_ >= 0) ::close(fd_);
}

std::string EventLog::format(
    EventType type, const std::string& message,
    const std::vector<std::pair<std::string, std::string>>& fields) const {
  const auto now = std::chrono::system_clock::now();
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         now.time_since_epoch())
                         .count();
  const std::time_t secs = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char iso[96];
  std::snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(ns / 1000000 % 1000));
  nlohmann::ordered_json j;
  j["time"] = iso;
  j["time_ns"] = ns;
  j["event"] = to_string(type);
  j["uuid"] = uuid_;
  j["device"] = device_;
  j["mountpoint"] = mountpoint_;
  j["message"] = message;
  for (const auto& [k, v] : fields) j[k] = v;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void EventLog::append(const std::string& line) {
  if (fd_ < 0) return;
  struct stat st {};
  if (::fstat(fd_, &st) == 0 && st.st_size > kRotateBytes) {
    // Keep one older file; `pcimirror events` reopens by name.
    const std::string old = path_ + ".1";
    if (::rename(path_.c_str(), old.c_str()) == 0) {
      ::close(fd_);
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                   0644);
      if (fd_ < 0) return;
    }
  }
  const std::string out = line + "\n";
  // One write(2) per line with O_APPEND: readers never see half a line
  // from two writers interleaved.
  if (::write(fd_, out.data(), out.size()) != static_cast<ssize_t>(out.size()))
    log_warning("appending an event to " + path_ + " failed (" +
                std::strerror(errno) + ")");
}

void EventLog::emit(
    EventType type, const std::string& message,
    const std::vector<std::pair<std::string, std::string>>& fields) {
  const std::string line = format(type, message, fields);
  const TypeInfo& i = info(type);
  // The journal when it runs (the JSON line as MESSAGE, the type as a
  // field to match on); otherwise the daemon's log (stderr or syslog).
  const int r = sd_journal_send("MESSAGE=%s", line.c_str(), "MESSAGE_ID=%s",
                                i.message_id, "PRIORITY=%i", i.priority,
                                "PCIMIRROR_EVENT=%s", i.name,
                                "PCIMIRROR_UUID=%s", uuid_.c_str(), nullptr);
  if (r < 0) log(static_cast<LogLevel>(i.priority), "event " + line);
  MutexLock lock(mu_);
  append(line);
}

}  // namespace pcimirror
