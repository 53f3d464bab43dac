#include "fs/ups_watch.h"

#include <upsclient.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "fs/mirror.h"
#include "fs/slice_fs.h"
#include "io/log.h"

namespace pcimirror {
namespace {

// upscli_init() once per process: no certificate database, no verification
// (the watch connects in plain text, as upsc does by default).
void init_upsclient() {
  static std::once_flag once;
  std::call_once(once, [] { (void)upscli_init(0, nullptr, nullptr, nullptr); });
}

std::vector<std::string> status_tokens(const std::string& status) {
  std::vector<std::string> out;
  std::istringstream in(status);
  for (std::string t; in >> t;) out.push_back(t);
  return out;
}

bool has_token(const std::vector<std::string>& tokens, const char* t) {
  for (const std::string& x : tokens)
    if (x == t) return true;
  return false;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.2f s" : "%.0f s", s);
  return buf;
}

std::optional<double> parse_number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace

std::string UpsTarget::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return ups + "@" + (v6 ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

Result<UpsTarget> parse_ups_target(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return make_error(EINVAL, "-o ups=" + text + ": " + why +
                                  "; give UPSNAME@HOST[:PORT], the UPS as "
                                  "upsd knows it (upsc -l HOST lists them)");
  };
  const size_t at = text.find('@');
  if (at == std::string::npos) return bad("no @HOST");
  UpsTarget t;
  t.ups = text.substr(0, at);
  if (t.ups.empty()) return bad("no UPS name before @");
  for (char c : t.ups)
    if (c == ' ' || c == '"' || c == '\\' || c == ',')
      return bad("the UPS name has a space, a quote, a comma or a backslash");
  std::string rest = text.substr(at + 1);
  std::string port;
  if (!rest.empty() && rest[0] == '[') {
    const size_t close = rest.find(']');
    if (close == std::string::npos) return bad("no ] after the IPv6 address");
    t.host = rest.substr(1, close - 1);
    const std::string after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("expected :PORT after ]");
      port = after.substr(1);
      if (port.empty()) return bad("empty port");
    }
  } else {
    const size_t colon = rest.rfind(':');
    if (colon != std::string::npos) {
      if (rest.find(':') != colon)
        return bad("write an IPv6 address in brackets, [ADDR]:PORT");
      port = rest.substr(colon + 1);
      if (port.empty()) return bad("empty port");
      rest = rest.substr(0, colon);
    }
    t.host = rest;
  }
  if (t.host.empty()) return bad("no host after @");
  if (!port.empty()) {
    uint64_t v = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || v > 65535)
        return bad("bad port '" + port + "'");
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v == 0 || v > 65535) return bad("port " + port + " is not 1 to 65535");
    t.port = static_cast<uint16_t>(v);
  }
  return t;
}

Protection assess_protection(const ProtectionInput& in) {
  Protection p;
  if (!in.ups_configured) {
    p.state = "no UPS";
    p.reason = "no ups= option: pcimirror does not hear of a power failure";
    return p;
  }
  if (in.mb_per_s > 0)
    p.estimate_s = static_cast<double>(in.save_bytes) / 1e6 / in.mb_per_s;
  p.state = "unprotected";
  if (!in.ups_reachable) {
    p.reason = "the UPS is unreachable: " + in.unreachable_why;
    return p;
  }
  if (in.memory != MemoryState::kOk) {
    p.reason = std::string("the memory guard says ") + to_string(in.memory) +
               (in.memory_message.empty() ? "" : ": " + in.memory_message) +
               "; every mirror is refused";
    return p;
  }
  if (!in.last_sync_error.empty()) {
    p.reason = "the last mirror failed: " + in.last_sync_error;
    return p;
  }
  if (!in.runtime_s) {
    p.reason = "the UPS reports no battery.runtime";
    return p;
  }
  if (!p.estimate_s) {
    p.reason =
        "save time unknown: no mirror measured yet (pcimirror sync measures "
        "one)";
    return p;
  }
  const double need = *p.estimate_s * in.margin;
  char margin[32];
  std::snprintf(margin, sizeof margin, "%g", in.margin);
  const std::string fit = "save estimate " + seconds_text(*p.estimate_s) +
                          " x ups_margin " + margin + " = " +
                          seconds_text(need);
  if (need > *in.runtime_s) {
    p.reason =
        fit + " exceeds the battery runtime of " + seconds_text(*in.runtime_s);
    return p;
  }
  p.state = "protected";
  p.reason =
      fit + " fits into the battery runtime of " + seconds_text(*in.runtime_s);
  return p;
}

struct UpsWatch::Poll {
  bool reachable = false;
  std::string why;  // when not reachable
  std::string status;
  std::optional<double> charge, runtime_s;
};

UpsWatch::UpsWatch(SliceFs& fs, MirrorEngine& engine, UpsWatchOptions options)
    : fs_(fs), engine_(engine), options_(std::move(options)) {
  init_upsclient();
  conn_ = new UPSCONN_t{};
  // Until the first poll: neither protected nor "no UPS".
  nlohmann::ordered_json j;
  j["state"] = "unprotected";
  j["reason"] = "the UPS watch has not heard from upsd yet";
  j["ups"] = options_.target.to_string();
  j["ups_status"] = "unknown";
  j["writes_refused"] = fs_.power_fail_read_only();
  fs_.set_protection(j.dump());
  log_info("UPS watch: asking upsd for UPS " + options_.target.to_string() +
           " every " + std::to_string(options_.poll_ms) + " ms");
  thread_ = std::thread([this] { run(); });
}

UpsWatch::~UpsWatch() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.NotifyAll();
  if (thread_.joinable()) thread_.join();
  disconnect();
  delete static_cast<UPSCONN_t*>(conn_);
}

void UpsWatch::disconnect() {
  if (!connected_) return;
  (void)upscli_disconnect(static_cast<UPSCONN_t*>(conn_));
  connected_ = false;
}

void UpsWatch::poll(Poll& p) {
  auto* c = static_cast<UPSCONN_t*>(conn_);
  const UpsTarget& t = options_.target;
  const std::string where = "upsd at " + t.host + ":" + std::to_string(t.port);
  if (!connected_) {
    struct timeval tv {};
    tv.tv_sec = 2;
    if (upscli_tryconnect(c, t.host.c_str(), t.port, 0, &tv) < 0) {
      p.why = "cannot connect to " + where + ": " + upscli_strerror(c);
      (void)upscli_disconnect(c);
      return;
    }
    connected_ = true;
  }
  // One variable; false with `err` set on failure.
  auto get = [&](const char* var, std::string& value, int& err) {
    const char* query[] = {"VAR", t.ups.c_str(), var};
    size_t numa = 0;
    char** answer = nullptr;
    if (upscli_get(c, 3, query, &numa, &answer) < 0 || numa < 4) {
      err = upscli_upserror(c);
      return false;
    }
    value = answer[3];
    return true;
  };
  int err = 0;
  std::string v;
  if (!get("ups.status", p.status, err)) {
    p.why = where + " about UPS '" + t.ups + "': " + upscli_strerror(c);
    disconnect();
    return;
  }
  for (const auto& [var, out] : {std::pair{"battery.charge", &p.charge},
                                 std::pair{"battery.runtime", &p.runtime_s}}) {
    if (get(var, v, err)) {
      *out = parse_number(v);
    } else if (err != UPSCLI_ERR_VARNOTSUPP && err != UPSCLI_ERR_VARUNKNOWN &&
               err != UPSCLI_ERR_UNKNOWNVAR) {
      p.why = where + " about UPS '" + t.ups + "' (" + var +
              "): " + upscli_strerror(c);
      disconnect();
      return;
    }
  }
  p.reachable = true;
}

void UpsWatch::emit(EventType type, const std::string& message, const Poll& p) {
  if (!options_.events) return;
  std::vector<std::pair<std::string, std::string>> fields = {
      {"ups", options_.target.to_string()},
      {"ups_status", p.reachable ? p.status : "unreachable"}};
  auto number = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  if (p.charge) fields.emplace_back("battery_charge", number(*p.charge));
  if (p.runtime_s) fields.emplace_back("battery_runtime", number(*p.runtime_s));
  options_.events->emit(type, message, fields);
}

bool UpsWatch::mirror_all(const std::string& why) {
  const auto start = std::chrono::steady_clock::now();
  Status st = fs_.sync_batch({});
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (st.ok()) {
    log_info("UPS " + options_.target.to_string() + ": " + why +
             ": mirrored every slice in " + seconds_text(s));
    return true;
  }
  log_error("UPS " + options_.target.to_string() + ": " + why +
            ": mirroring every slice failed: " + st.error().what() +
            (power_fail_ ? "; trying again at the next poll" : ""));
  return false;
}

void UpsWatch::act(const Poll& p) {
  const std::string name = options_.target.to_string();
  if (!p.reachable) {
    if (reachable_ || first_poll_) {
      log_error("UPS " + name + " is unreachable: " + p.why +
                "; asking again every " + std::to_string(options_.poll_ms) +
                " ms (a power failure goes unnoticed meanwhile)");
      emit(EventType::kUpsUnreachable,
           "UPS " + name + " is unreachable: " + p.why, p);
    }
    reachable_ = false;
    return;
  }
  if (!reachable_)
    log_info("UPS " + name + " is reachable again: status " + p.status);
  else if (first_poll_)
    log_info("UPS " + name + ": status " + p.status);
  reachable_ = true;
  const auto tokens = status_tokens(p.status);
  const bool ol = has_token(tokens, "OL");
  const bool ob = has_token(tokens, "OB");
  const bool lb = has_token(tokens, "LB") && !ol;
  const bool fsd = has_token(tokens, "FSD");
  const std::string says = "UPS " + name + " reports " + p.status;
  if (ob && !on_battery_) {
    on_battery_ = true;
    if (lb || fsd)
      log_warning(says + ": on battery");
    else
      log_warning(says + ": on battery; mirroring every slice now and every " +
                  std::to_string(options_.interval_ms / 1000) +
                  " s (ups_interval) while on battery");
    emit(EventType::kOnBattery, says + ": on battery", p);
    if (!lb && !fsd) {
      mirror_all("on battery");
      next_mirror_ = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(options_.interval_ms);
    }
  }
  if (lb && !low_battery_) {
    low_battery_ = true;
    emit(EventType::kLowBattery,
         says +
             ": low battery; final mirror, then "
             "writes fail with EROFS",
         p);
  }
  if (fsd && !forced_) {
    forced_ = true;
    emit(EventType::kForcedShutdown,
         says + ": forced shutdown; final mirror, then writes fail with EROFS",
         p);
  }
  if ((lb || fsd) && !power_fail_) {
    power_fail_ = true;
    // Writes stop first, so the final mirror holds every write the mount
    // accepted (SliceFs::set_power_fail_read_only). A failed final mirror
    // is tried again at every poll (run()).
    fs_.set_power_fail_read_only(true, says);
    log_warning(says + ": taking the final mirror of every slice");
    final_done_ = mirror_all("final mirror");
  }
  if (ol && !ob && !fsd &&
      (on_battery_ || low_battery_ || forced_ || power_fail_)) {
    log_info(says + ": back online");
    emit(EventType::kOnline, says + ": back online", p);
    if (power_fail_) fs_.set_power_fail_read_only(false, says);
    on_battery_ = low_battery_ = forced_ = power_fail_ = final_done_ = false;
  }
}

void UpsWatch::publish(const Poll& p) {
  ProtectionInput in;
  in.ups_configured = true;
  in.ups_reachable = p.reachable;
  in.unreachable_why = p.why;
  in.ups_status = p.status;
  in.runtime_s = p.runtime_s;
  in.save_bytes = fs_.save_bytes();
  in.mb_per_s = fs_.recent_mb_per_s();
  in.last_sync_error = fs_.last_sync_error();
  in.memory = engine_.memory_state();
  if (in.memory != MemoryState::kOk)
    in.memory_message = engine_.memory_message();
  in.margin = options_.margin;
  const Protection pr = assess_protection(in);
  nlohmann::ordered_json j;
  j["state"] = pr.state;
  j["reason"] = pr.reason;
  j["estimate_s"] = pr.estimate_s ? nlohmann::json(*pr.estimate_s) : nullptr;
  j["runtime_s"] = p.runtime_s ? nlohmann::json(*p.runtime_s) : nullptr;
  j["ups"] = options_.target.to_string();
  j["ups_status"] = p.reachable ? p.status : "unreachable";
  j["battery_charge"] = p.charge ? nlohmann::json(*p.charge) : nullptr;
  j["save_bytes"] = in.save_bytes;
  j["mb_per_s"] = in.mb_per_s > 0 ? nlohmann::json(in.mb_per_s) : nullptr;
  j["margin"] = options_.margin;
  j["writes_refused"] = fs_.power_fail_read_only();
  fs_.set_protection(
      j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  if (pr.state != last_state_) {
    const bool ok = pr.state == "protected";
    (ok ? log_info : log_warning)("protection: " + pr.state + ": " + pr.reason);
    emit(ok ? EventType::kProtected : EventType::kUnprotected,
         pr.state + ": " + pr.reason, p);
    last_state_ = pr.state;
  }
}

void UpsWatch::run() {
  const auto period = std::chrono::milliseconds(options_.poll_ms);
  for (;;) {
    Poll p;
    poll(p);
    const bool retry_final = power_fail_ && !final_done_;
    act(p);
    first_poll_ = false;
    // Mirrors on battery, whether or not this poll reached upsd: a failed
    // final mirror again (not in the poll that first tried it), or the
    // ups_interval mirror.
    if (retry_final && power_fail_ && !final_done_) {
      final_done_ = mirror_all("final mirror, again");
    } else if (on_battery_ && !power_fail_ &&
               std::chrono::steady_clock::now() >= next_mirror_) {
      mirror_all("on battery, every ups_interval");
      next_mirror_ = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(options_.interval_ms);
    }
    publish(p);
    MutexLock lock(mu_);
    const auto until = std::chrono::steady_clock::now() + period;
    while (!stopping_ && cv_.WaitUntil(mu_, until) != std::cv_status::timeout) {
    }
    if (stopping_) return;
  }
}

}  // namespace pcimirror
