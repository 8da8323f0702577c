// RunHistory (the dashboard's /v1/history): bounded rounds, policy change log, warning ring,
// refill from metrics.jsonl, since_round filtering and the route's query parser.
#include "outer/run_history.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>

#include "outer/dashboard_routes.h"
#include "outer/test_dirs.h"

namespace longhaul::outer {
namespace {

using json = nlohmann::json;

json round_line(int64_t r) { return {{"event", "round"}, {"round", r}, {"duration_s", 1.5}, {"bytes_up", 10 * r}}; }

TEST(RunHistory, KeepsTheLastRoundsWithinTheCapAndFiltersBySinceRound) {
  RunHistory::Limits lim;
  lim.max_rounds = 3;
  RunHistory h(lim);
  for (int r = 0; r < 5; ++r) h.add_round(round_line(r));
  h.add_round({{"round", "not a number"}});  // ignored
  json j = h.to_json();
  ASSERT_EQ(j["rounds"].size(), 3u);
  EXPECT_EQ(j["rounds"][0]["round"], 2);
  EXPECT_EQ(j["rounds"][2]["bytes_up"], 40) << "fields are kept as the coordinator wrote them";
  EXPECT_EQ(j["rounds_dropped"], 2);
  EXPECT_EQ(h.to_json(3)["rounds"].size(), 1u);
  EXPECT_EQ(h.to_json(4)["rounds"].size(), 0u);
  h.add_round(round_line(3));  // a round re-run after a restart replaces the later lines
  EXPECT_EQ(h.to_json()["rounds"].back()["round"], 3);
  EXPECT_EQ(h.rounds(), 2u);
}

TEST(RunHistory, PolicyChangesAreLoggedOnlyWhenSomethingChanged) {
  RunHistory h;
  SyncPolicy p;
  h.note_policy(0, sync_policy_json(p));
  h.note_policy(1, sync_policy_json(p));
  p.inner_steps = 20;
  h.note_policy(2, sync_policy_json(p));
  json j = h.to_json();
  ASSERT_EQ(j["policy_changes"].size(), 2u);
  EXPECT_EQ(j["policy_changes"][1]["round"], 2);
  EXPECT_EQ(j["policy_changes"][1]["changes"]["inner_steps"], json::array({50, 20}));
  EXPECT_EQ(j["policy_changes"][1]["changes"].size(), 1u);
  EXPECT_EQ(j["policy"]["inner_steps"], 20);
}

TEST(RunHistory, WarningsAreARingOfCutTexts) {
  RunHistory::Limits lim;
  lim.max_warnings = 2;
  lim.max_warning_chars = 10;
  RunHistory h(lim);
  h.add_warning("WARN", "coordinator", "first");
  h.add_warning("WARN", "coordinator", "second");
  h.add_warning("ERROR", "transport", "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9");  // 12 bytes of é
  json j = h.to_json();
  ASSERT_EQ(j["warnings"].size(), 2u);
  EXPECT_EQ(j["warnings"][0]["message"], "second");
  EXPECT_EQ(j["warnings"][1]["level"], "ERROR");
  EXPECT_EQ(j["warnings"][1]["message"], "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xE2\x80\xA6")
      << "cut at a character boundary";
  EXPECT_EQ(j["warnings_total"], 3);
  h.add_warning("WARN", "x", "\xff\xfe invalid UTF-8 from a peer");
  EXPECT_NO_THROW(h.to_json().dump(-1, ' ', false, json::error_handler_t::replace));
}

TEST(RunHistory, RefillsFromMetricsJsonl) {
  const auto dir = std::filesystem::temp_directory_path() / ("lh_run_history_" + std::to_string(::getpid()));
  testing::remove_tree(dir);
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir / "metrics.jsonl");
    f << json({{"event", "init"}, {"run_id", "run-x"}, {"time", 1700000000.5}}).dump() << "\n"
      << round_line(0).dump() << "\n"
      << "{not json\n"
      << round_line(1).dump() << "\n"
      << "\n";
  }
  RunHistory h;
  h.set_run("run-x", 1.0);
  EXPECT_EQ(h.load_jsonl(dir / "metrics.jsonl"), 2u);
  json j = h.to_json();
  EXPECT_EQ(j["started"], 1700000000.5);
  EXPECT_EQ(j["skipped_lines"], 1);
  EXPECT_EQ(j["rounds"].size(), 2u);
  EXPECT_EQ(RunHistory().load_jsonl(dir / "missing.jsonl"), 0u);
  testing::remove_tree(dir);
}

TEST(DashboardRoutes, SinceRoundQueryIsStrict) {
  long long v = 0;
  EXPECT_TRUE(parse_since_round("", &v));
  EXPECT_EQ(v, -1);
  EXPECT_TRUE(parse_since_round("since_round=12", &v));
  EXPECT_EQ(v, 12);
  EXPECT_TRUE(parse_since_round("since_round=-1", &v));
  for (const char* bad : {"since_round=", "since_round=x", "since_round=-2", "since_round=1&x=2",
                          "round=1", "since_round=99999999999999999999", "since_round=4611686018427387905"})
    EXPECT_FALSE(parse_since_round(bad, &v)) << bad;
}

}  // namespace
}  // namespace longhaul::outer
