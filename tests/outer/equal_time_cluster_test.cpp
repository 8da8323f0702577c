// sync.balance = "equal_time" end to end: a real coordinator and three real site processes over
// TLS, one of them emulating a device 20x slower (the `slowdown` aid: it sleeps until each step
// took 20x its CPU time, so machine load cannot hide it). Round 0 runs H everywhere; from the
// rounds planned on measured rates on, the slow site gets a proportionally smaller H_k, the
// fast ones (nearly) H, each site trains exactly its H_k (tokens), every upload is accepted
// and every replica still holds bitwise the published θ.
#include <gtest/gtest.h>

#include <set>

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "outer/cluster_util.h"

namespace longhaul::testing {
namespace {

using namespace std::chrono_literals;

TEST(EqualTimeCluster, SlowSiteGetsFewerInnerStepsAndAllStayInSync) {
  ClusterOptions o;
  o.rounds = 4;
  o.inner_steps = 8;
  o.coordinator_overrides = {"sync.balance=\"equal_time\"", "sync.min_inner_steps=1",
                             "outer.weighting=\"normalized\""};
  Cluster c("equal_time", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::vector<Process> sites;
  sites.push_back(c.start_site("site-a"));
  sites.push_back(c.start_site("site-b"));
  sites.push_back(c.start_site("site-c", "", {"--set", "train.devices=[{ device = \"cpu\", slowdown = 20.0 }]"}));
  ASSERT_EQ(coord.wait(300s), 0) << Cluster::tail(coord.log());
  for (auto& p : sites) EXPECT_EQ(p.wait(60s), 0) << Cluster::tail(p.log());

  auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 4u);
  for (const auto& r : rounds) EXPECT_EQ(r["sites"].size(), 3u) << r.dump();  // nothing refused
  // Round 0: no rates yet, H everywhere.
  for (const auto& s : o.sites) EXPECT_EQ(rounds[0]["inner_steps_by_site"][s], 8) << s;
  // Later rounds: the slow site runs at most half of H, the fastest site H.
  for (size_t i = 1; i < rounds.size(); ++i) {
    const auto& plan = rounds[i]["inner_steps_by_site"];
    const int64_t a = plan["site-a"], b = plan["site-b"], slow = plan["site-c"];
    EXPECT_EQ(std::max(a, b), 8) << plan.dump();
    EXPECT_LE(slow, 4) << plan.dump();
    EXPECT_GE(slow, 1) << plan.dump();
    EXPECT_LT(slow, std::min(a, b)) << plan.dump();
  }
  // Each site trained exactly its H_k (4 sequences x 32 tokens per step) and holds θ bitwise.
  for (const auto& s : o.sites) {
    auto sr = c.site_rounds(s);
    ASSERT_EQ(sr.size(), rounds.size()) << s;
    for (size_t i = 0; i < sr.size(); ++i) {
      EXPECT_EQ(sr[i]["tokens"].get<int64_t>(), rounds[i]["inner_steps_by_site"][s].get<int64_t>() * 4 * 32)
          << s << " round " << i;
      EXPECT_EQ(sr[i]["param_hash"], rounds[i]["param_hash"]) << s << " round " << i;
    }
  }
  std::printf("H_k by round:");
  for (const auto& r : rounds) std::printf(" %s", r["inner_steps_by_site"].dump().c_str());
  std::printf("\n");
}

// Sites of different emulated speeds finish their rounds together: once rates are measured,
// the slow site's compute seconds per round are within 2x of the fast sites' (without the plan
// they would be about 4x), and every site reports its utilisation (compute / cycle seconds).
// Every site's steps are stretched (slowdown 5 and 20), so sleeping, not the loaded CPU,
// sets the step times.
TEST(EqualTimeCluster, SitesOfDifferentSpeedsFinishTheirComputeTogether) {
  ClusterOptions o;
  o.rounds = 5;
  o.inner_steps = 16;
  o.coordinator_overrides = {"sync.balance=\"equal_time\"", "sync.min_inner_steps=1"};
  Cluster c("equal_time_together", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  auto device = [](const char* slowdown) {
    return std::vector<std::string>{"--set", std::string("train.devices=[{ device = \"cpu\", slowdown = ") + slowdown + " }]"};
  };
  std::vector<Process> sites;
  sites.push_back(c.start_site("site-a", "", device("5.0")));
  sites.push_back(c.start_site("site-b", "", device("5.0")));
  sites.push_back(c.start_site("site-c", "", device("20.0")));
  ASSERT_EQ(coord.wait(300s), 0) << Cluster::tail(coord.log());
  for (auto& p : sites) EXPECT_EQ(p.wait(60s), 0) << Cluster::tail(p.log());
  auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 5u);
  // Round 0 runs H everywhere: the slow site computes ~4x longer than the fast ones.
  const auto& t0 = rounds[0]["site_timing"];
  EXPECT_GT(t0["site-c"]["compute_s"].get<double>(), 2 * t0["site-a"]["compute_s"].get<double>()) << t0.dump();
  for (size_t i = 2; i < rounds.size(); ++i) {
    const auto& t = rounds[i]["site_timing"];
    ASSERT_TRUE(t.contains("site-c")) << rounds[i].dump();
    const double slow = t["site-c"]["compute_s"], fast = std::max(t["site-a"]["compute_s"].get<double>(),
                                                                   t["site-b"]["compute_s"].get<double>());
    EXPECT_LT(slow, 2 * fast) << "round " << i << ": " << t.dump();
    EXPECT_LT(fast, 2 * slow) << "round " << i << ": " << t.dump();
    for (const auto& s : o.sites) {
      ASSERT_TRUE(t[s].contains("utilisation")) << t.dump();
      const double u = t[s]["utilisation"];
      EXPECT_GT(u, 0.0) << s;
      EXPECT_LE(u, 1.0) << s;
    }
  }
}

// A transient straggler (its process stopped for a while, then continued) does not stall the
// others: with equal_time a round closes once the expected time plus sync.straggler_margin has
// passed and the quorum uploaded; the straggler's upload then counts in the next round, stale,
// with outer.stale_weight, exactly once; no upload is dropped and every replica ends bitwise
// equal to the published θ.
TEST(EqualTimeCluster, TransientStragglersUploadCountsStaleInTheNextRound) {
  ClusterOptions o;
  o.rounds = 7;
  o.inner_steps = 10;
  o.min_sites = 2;
  o.deadline_s = 120;  // far above the equal_time close: only that can close without site-c
  o.coordinator_overrides = {"sync.balance=\"equal_time\"", "sync.straggler_margin=0.5",
                             "outer.stale_weight=0.5"};
  Cluster c("straggler", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  // Every site's steps emulated 10x slower, so that a round lasts long against process noise.
  const std::vector<std::string> slow = {"--set", "train.devices=[{ device = \"cpu\", slowdown = 10.0 }]"};
  std::vector<Process> sites;
  for (const auto& s : o.sites) sites.push_back(c.start_site(s, "", slow));
  ASSERT_TRUE(c.wait_for_rounds(2, 120s)) << Cluster::tail(coord.log());
  // Rates are measured now; site-c stops for about two rounds (its upload then counts in a
  // later round, 1 or 2 rounds stale), well before the run's last round.
  const double round_s = c.coordinator_rounds().back()["duration_s"].get<double>();
  sites[2].signal(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(1000 * std::max(0.5, 2 * round_s))));
  sites[2].signal(SIGCONT);
  ASSERT_EQ(coord.wait(300s), 0) << Cluster::tail(coord.log());
  for (auto& p : sites) EXPECT_EQ(p.wait(60s), 0) << Cluster::tail(p.log());

  auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 7u);
  int without_c = 0, stale_c = 0;
  for (const auto& r : rounds) {
    const auto& s = r["sites"];
    if (std::find(s.begin(), s.end(), "site-c") == s.end()) ++without_c;
    for (const auto& x : r["stale_sites"]) stale_c += x == "site-c";
    EXPECT_LT(r["duration_s"].get<double>(), o.deadline_s) << r.dump();  // never the hard deadline
  }
  EXPECT_GE(without_c, 1) << "rounds closed without the stopped site";
  // Its late upload counted in the round after. While it catches up it may be late again
  // (the next round opens as soon as the previous closes, and rounds are short): each late
  // upload counts once, for a round it missed, so never more often than it missed a round.
  EXPECT_GE(stale_c, 1) << "its late upload did not count";
  EXPECT_LE(stale_c, without_c);
  // The site saw it too, and every replica is bitwise the published θ after every round.
  int site_stale = 0;
  for (const auto& s : o.sites) {
    for (const auto& l : c.site_rounds(s)) {
      site_stale += l.value("stale_contributed", false);
      const auto it = std::find_if(rounds.begin(), rounds.end(), [&](const auto& r) { return r["round"] == l["round"]; });
      ASSERT_NE(it, rounds.end());
      EXPECT_EQ(l["param_hash"], (*it)["param_hash"]) << s << " round " << l["round"];
    }
  }
  EXPECT_EQ(site_stale, stale_c);
  const std::string log = Cluster::tail(coord.log(), 1 << 20);
  // The staleness rule accepts a late upload once, for the first round the site missed: when
  // site-c is late twice in a row while catching up, the second is refused as late (logged,
  // acked, never applied) — at most that one, and only site-c's.
  size_t dropped = 0;
  for (size_t at = log.find("dropped: late"); at != std::string::npos; at = log.find("dropped: late", at + 1)) {
    ++dropped;
    EXPECT_NE(log.rfind("upload from site-c", at), std::string::npos);
  }
  EXPECT_LE(dropped, 1u) << log;
  std::set<std::string> late_rounds;  // "round X: late upload from site-c stale: ...": X once each
  const std::string mark = ": late upload from site-c stale: counted in round";
  for (size_t at = log.find(mark); at != std::string::npos; at = log.find(mark, at + 1)) {
    const size_t start = log.rfind("round ", at);
    EXPECT_TRUE(late_rounds.insert(log.substr(start, at - start)).second) << "counted twice: " << log.substr(start, 80);
  }
  EXPECT_EQ(late_rounds.size(), static_cast<size_t>(stale_c)) << log;
}

}  // namespace
}  // namespace longhaul::testing
