// Events (fs/events.h): the JSON line, and every event's name and
// MESSAGE_ID documented in pcimirror(8), EVENTS, as the code has them.
#include "fs/events.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace pcimirror {
namespace {

constexpr EventType kAll[] = {
    EventType::kDirtyShutdown,  EventType::kDeviceLost,
    EventType::kDeviceBack,     EventType::kMemoryReset,
    EventType::kMemoryAccepted, EventType::kSyncFailed,
    EventType::kSyncRecovered,  EventType::kOnBattery,
    EventType::kLowBattery,     EventType::kForcedShutdown,
    EventType::kOnline,         EventType::kUpsUnreachable,
    EventType::kProtected,      EventType::kUnprotected};

TEST(Events, NamesAndMessageIdsAreUniqueAndDocumented) {
  std::ifstream in(std::string(PCIMIRROR_SOURCE_DIR) +
                   "/packaging/pcimirror.8");
  ASSERT_TRUE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  // roff escapes the hyphens of the names.
  std::string man;
  for (size_t i = 0; i < ss.str().size(); ++i) {
    if (ss.str().compare(i, 2, "\\-") == 0) {
      man += '-';
      ++i;
    } else {
      man += ss.str()[i];
    }
  }
  std::set<std::string> names, ids;
  for (EventType t : kAll) {
    const std::string name = to_string(t), id = event_message_id(t);
    EXPECT_TRUE(names.insert(name).second) << name;
    EXPECT_TRUE(ids.insert(id).second) << id;
    EXPECT_EQ(id.size(), 32u) << name;
    EXPECT_NE(man.find(name + "\t" + id), std::string::npos)
        << name << " " << id << " is not in pcimirror(8), EVENTS";
  }
}

TEST(Events, OneJsonLineWithTheStableFields) {
  EventLog log("0a0b-test", "/dev/loop9", "/mnt/x");
  const std::string line = log.format(
      EventType::kSyncFailed, "mirror of \"a\"\nfailed", {{"errno", "5"}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["event"], "sync-failed");
  EXPECT_EQ(j["device"], "/dev/loop9");
  EXPECT_EQ(j["mountpoint"], "/mnt/x");
  EXPECT_EQ(j["uuid"], "0a0b-test");
  EXPECT_EQ(j["message"], "mirror of \"a\"\nfailed");
  EXPECT_EQ(j["errno"], "5");
  EXPECT_GT(j["time_ns"].get<int64_t>(), 0);
  EXPECT_EQ(j["time"].get<std::string>().back(), 'Z');
  std::remove(event_file_path("0a0b-test").c_str());
}

}  // namespace
}  // namespace pcimirror
