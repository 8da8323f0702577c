// Streaming DiLoCo end to end (issue #11): a real coordinator and three real site processes
// over mutual TLS, θ split into fragments that synchronize in turn while the sites keep
// training through each exchange (overlap τ > 0, merge α), one site killed mid-fragment and
// restarted.
#include <gtest/gtest.h>

#include <signal.h>

#include <map>
#include <set>
#include <thread>

#include "outer/cluster_util.h"

namespace longhaul::testing {
namespace {

using namespace std::chrono_literals;

TEST(StreamingCluster, FragmentsOverlapMergeAndASiteKilledMidFragmentRejoins) {
  ClusterOptions o;
  o.rounds = 30;  // 15 exchanges of each fragment
  o.inner_steps = 8;
  o.deadline_s = 6;
  o.coordinator_overrides = {"model.n_layer=2", "sync.fragments=2", "sync.overlap_steps=2",
                             "sync.merge_alpha=0.5"};
  Cluster c("streaming", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::map<std::string, Process> sites;
  for (const auto& s : o.sites) sites[s] = c.start_site(s);
  ASSERT_TRUE(c.wait_for_rounds(3, 180s)) << Cluster::tail(coord.log());
  ASSERT_TRUE(Cluster::wait_until_training(sites["site-c"], 60s)) << Cluster::tail(sites["site-c"].log());
  sites["site-c"].signal(SIGKILL);
  EXPECT_EQ(sites["site-c"].wait(10s), 128 + SIGKILL);
  // A round closes without site-c (at its deadline), then site-c restarts from its checkpoint.
  bool without_c = false;
  const auto until = std::chrono::steady_clock::now() + 90s;
  while (!without_c && std::chrono::steady_clock::now() < until) {
    for (const auto& r : c.coordinator_rounds()) without_c |= r["sites"].size() == 2u && r["participants"] == 3;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(without_c) << Cluster::tail(coord.log());
  ASSERT_TRUE(c.restart_site_holding_the_others(sites, "site-c", "-restart", 120s))
      << Cluster::tail(sites["site-c"].log());
  ASSERT_EQ(coord.wait(300s), 0) << Cluster::tail(coord.log());
  for (auto& [s, p] : sites) EXPECT_EQ(p.wait(60s), 0) << s << Cluster::tail(p.log());

  const auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 30u);
  std::map<int64_t, std::string> coord_hash;
  std::map<int, uint64_t> up_bytes;  // fragment -> bytes of one upload
  for (const auto& r : rounds) {
    const int64_t k = r["round"];
    coord_hash[k] = r["param_hash"];
    // Round r exchanges fragment (r + 1) mod 2, after its gap of the H = 8 schedule (4 steps).
    EXPECT_EQ(r["fragment"], (k + 1) % 2) << r.dump();
    EXPECT_EQ(r["inner_steps"], 4) << r.dump();
    if (!r["sites"].empty()) up_bytes[r["fragment"]] = r["bytes_up"].get<uint64_t>() / r["sites"].size();
  }
  // Each exchange carries one fragment: about half of θ (the layout balances the embeddings).
  ASSERT_EQ(up_bytes.size(), 2u);
  const double total = static_cast<double>(rounds[0]["fragment_elements"].get<uint64_t>() +
                                           rounds[1]["fragment_elements"].get<uint64_t>());
  for (const auto& r : {rounds[0], rounds[1]})
    EXPECT_LT(r["fragment_elements"].get<double>() / total, 0.75) << r.dump();
  EXPECT_EQ(rounds.back()["sites"].size(), 3u) << "site-c did not rejoin: " << rounds.back().dump();
  // Every site's global θ equals the coordinator's after every round it applied (bitwise; the
  // local parameters differ by design), and all end on the coordinator's final θ.
  for (const auto& s : o.sites) {
    for (const auto& r : c.site_rounds(s)) {
      const int64_t k = r["round"];
      ASSERT_TRUE(coord_hash.count(k)) << s << " round " << k;
      EXPECT_EQ(r["param_hash"], coord_hash[k]) << s << " round " << k;
      EXPECT_EQ(r["hash_mismatches"], 0) << s;
    }
    const auto fin = Cluster::read_events(c.site_dir(s) / "metrics.jsonl", "final");
    ASSERT_FALSE(fin.empty()) << s;
    EXPECT_EQ(fin.back()["param_hash"], rounds.back()["param_hash"]) << s;
  }
  // Uploads report the gap's steps, the overlap included (4 = 2 before the upload + 2 ahead).
  int timed = 0;
  for (const auto& r : rounds)
    if (r.contains("site_timing"))
      for (const auto& [id, t] : r["site_timing"].items()) {
        EXPECT_EQ(t["inner_steps"], 4) << r.dump();
        ++timed;
      }
  EXPECT_GT(timed, 30);
  // The run learns: held-out loss of the global θ falls.
  const auto init = Cluster::read_events(c.coordinator_dir() / "metrics.jsonl", "init");
  ASSERT_EQ(init.size(), 1u);
  const double first = init[0]["eval_loss"], last = rounds.back()["eval_loss"];
  EXPECT_LT(last, first - 0.3) << "eval loss " << first << " -> " << last;
  const std::string restarted = Cluster::tail(c.root() / "site-c-restart.log", 1 << 20);
  EXPECT_NE(restarted.find("resumed from"), std::string::npos) << restarted;
  EXPECT_NE(restarted.find("streaming DiLoCo, 2 fragment(s), overlap 2 steps"), std::string::npos) << restarted;
  std::printf("eval loss %.3f -> %.3f over %zu rounds of 2 fragments; %lu / %lu B per upload\n", first, last,
              rounds.size(), static_cast<unsigned long>(up_bytes[0]), static_cast<unsigned long>(up_bytes[1]));
}

}  // namespace
}  // namespace longhaul::testing
