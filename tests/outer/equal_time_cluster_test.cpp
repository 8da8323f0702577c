// sync.balance = "equal_time" end to end: a real coordinator and three real site processes over
// TLS, one of them emulating a device 20x slower (the `slowdown` aid: it sleeps until each step
// took 20x its CPU time, so machine load cannot hide it). Round 0 runs H everywhere; from the
// rounds planned on measured rates on, the slow site gets a proportionally smaller H_k, the
// fast ones (nearly) H, each site trains exactly its H_k (tokens), every upload is accepted
// and every replica still holds bitwise the published θ.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

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

}  // namespace
}  // namespace longhaul::testing
