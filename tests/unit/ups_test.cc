// The UPS watch's pure parts (fs/ups_watch.h): the ups= target and the
// protection state. The watch itself runs against a real upsd in
// tests/e2e/ups.sh.
#include <gtest/gtest.h>

#include "fs/ups_watch.h"

namespace pcimirror {
namespace {

TEST(UpsTarget, ParsesNameHostAndPort) {
  auto t = parse_ups_target("myups@localhost");
  ASSERT_TRUE(t.ok()) << t.error().what();
  EXPECT_EQ(t->ups, "myups");
  EXPECT_EQ(t->host, "localhost");
  EXPECT_EQ(t->port, kNutDefaultPort);
  EXPECT_EQ(t->to_string(), "myups@localhost:3493");
  t = parse_ups_target("u@127.0.0.1:34931");
  ASSERT_TRUE(t.ok()) << t.error().what();
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, 34931);
  t = parse_ups_target("u@[::1]:3494");
  ASSERT_TRUE(t.ok()) << t.error().what();
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->port, 3494);
  EXPECT_EQ(t->to_string(), "u@[::1]:3494");
}

TEST(UpsTarget, RefusesMalformedTargets) {
  for (const char* bad :
       {"", "myups", "@host", "u@", "u@host:", "u@host:0", "u@host:65536",
        "u@host:12x", "u@::1", "u@[::1", "u@[::1]x", "a b@host"}) {
    auto t = parse_ups_target(bad);
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_EQ(t.error().code, EINVAL) << bad;
    EXPECT_NE(t.error().what().find("UPSNAME@HOST[:PORT]"), std::string::npos)
        << t.error().what();
  }
}

ProtectionInput good_input() {
  ProtectionInput in;
  in.ups_configured = true;
  in.ups_reachable = true;
  in.ups_status = "OL";
  in.runtime_s = 600;
  in.save_bytes = 100'000'000;  // 100 MB
  in.mb_per_s = 100;            // 1 s to save
  in.margin = 2;
  return in;
}

TEST(Protection, NoUpsWithoutTheOption) {
  ProtectionInput in;
  EXPECT_EQ(assess_protection(in).state, "no UPS");
}

TEST(Protection, ProtectedWhenTheEstimateTimesTheMarginFits) {
  ProtectionInput in = good_input();
  Protection p = assess_protection(in);
  EXPECT_EQ(p.state, "protected") << p.reason;
  ASSERT_TRUE(p.estimate_s);
  EXPECT_DOUBLE_EQ(*p.estimate_s, 1.0);
  in.runtime_s = 2;  // exactly 1 s x 2
  EXPECT_EQ(assess_protection(in).state, "protected");
  in.runtime_s = 1.9;
  p = assess_protection(in);
  EXPECT_EQ(p.state, "unprotected");
  EXPECT_NE(p.reason.find("exceeds the battery runtime"), std::string::npos)
      << p.reason;
}

TEST(Protection, UnprotectedWithTheReason) {
  struct Case {
    const char* what;
    void (*change)(ProtectionInput&);
    const char* reason;
  };
  const Case cases[] = {
      {"unreachable",
       [](ProtectionInput& in) {
         in.ups_reachable = false;
         in.unreachable_why = "Connection refused";
       },
       "unreachable: Connection refused"},
      {"no measurement", [](ProtectionInput& in) { in.mb_per_s = 0; },
       "save time unknown"},
      {"no runtime", [](ProtectionInput& in) { in.runtime_s.reset(); },
       "no battery.runtime"},
      {"failed mirror",
       [](ProtectionInput& in) { in.last_sync_error = "EIO on /dev/loop0"; },
       "the last mirror failed: EIO on /dev/loop0"},
      {"memory reset",
       [](ProtectionInput& in) { in.memory = MemoryState::kMemoryReset; },
       "memory-reset"},
      {"device lost",
       [](ProtectionInput& in) { in.memory = MemoryState::kDeviceLost; },
       "device-lost"},
  };
  for (const Case& c : cases) {
    ProtectionInput in = good_input();
    c.change(in);
    const Protection p = assess_protection(in);
    EXPECT_EQ(p.state, "unprotected") << c.what;
    EXPECT_NE(p.reason.find(c.reason), std::string::npos)
        << c.what << ": " << p.reason;
  }
}

TEST(Protection, EstimateIsUnknownBeforeAnyMeasurement) {
  ProtectionInput in = good_input();
  in.mb_per_s = 0;
  EXPECT_FALSE(assess_protection(in).estimate_s);
}

}  // namespace
}  // namespace pcimirror
