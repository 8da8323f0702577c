// sync.inner_steps = "auto" end to end: three real site processes over TLS whose links are
// emulated at 2 Mbit/s (site [link], both directions) and whose steps are stretched 10x (so
// step rates are steady under load). The first round runs min_inner_steps while nothing is
// measured; from the measured step rates and transfer times on, the coordinator picks the
// smallest H whose communication is at most target_comm_fraction of a round, logs its inputs,
// and every site trains exactly that H; every replica stays bitwise equal to the published θ.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "outer/cluster_util.h"

namespace longhaul::testing {
namespace {

using namespace std::chrono_literals;

TEST(AutoInnerStepsCluster, HIsChosenFromMeasuredStepAndLinkRates) {
  ClusterOptions o;
  o.rounds = 4;
  o.inner_steps = 1;  // replaced by "auto" below
  const double f = 0.5;
  o.coordinator_overrides = {"sync.inner_steps=\"auto\"", "sync.target_comm_fraction=0.5",
                             "sync.min_inner_steps=2", "sync.max_inner_steps=400"};
  Cluster c("auto_h", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::vector<Process> sites;
  for (const auto& s : o.sites)
    sites.push_back(c.start_site(s, "", {"--set", "train.devices=[{ device = \"cpu\", slowdown = 10.0 }]",
                                         "--set", "link.emulate_mbps=2", "--set", "link.emulate_rtt_ms=20"}));
  ASSERT_EQ(coord.wait(300s), 0) << Cluster::tail(coord.log());
  for (auto& p : sites) EXPECT_EQ(p.wait(60s), 0) << Cluster::tail(p.log());
  auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 4u);
  // Round 0: nothing measured yet, the minimum.
  EXPECT_FALSE(rounds[0]["auto_inner_steps"]["measured"].get<bool>()) << rounds[0].dump();
  EXPECT_EQ(rounds[0]["inner_steps"], 2);
  for (size_t i = 1; i < rounds.size(); ++i) {
    const auto& a = rounds[i]["auto_inner_steps"];
    ASSERT_TRUE(a["measured"].get<bool>()) << a.dump();
    // The choice follows from its logged inputs: H = clamp(ceil(max_k c_k r_k (1 - f) / f)).
    double bound = 0;
    for (const auto& s : o.sites) {
      const auto& in = a["inputs"][s];
      EXPECT_GT(in["comm_s"].get<double>(), 0.05) << s << ": a 2 Mbit/s link is measurably slow";
      bound = std::max(bound, in["comm_s"].get<double>() * in["steps_per_s"].get<double>() * (1 - f) / f);
    }
    EXPECT_NEAR(a["inputs"]["bound"].get<double>(), bound, 1e-9 * bound);
    const int64_t h = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(bound)), 2, 400);
    EXPECT_EQ(a["h"], h);
    EXPECT_EQ(rounds[i]["inner_steps"], h);
    EXPECT_GT(h, 2) << "a slow link asks for more inner steps than the minimum";
  }
  // Every site trained exactly each round's H (4 sequences x 32 tokens per step) and holds θ.
  for (const auto& s : o.sites) {
    auto sr = c.site_rounds(s);
    ASSERT_EQ(sr.size(), rounds.size()) << s;
    for (size_t i = 0; i < sr.size(); ++i) {
      EXPECT_EQ(sr[i]["tokens"].get<int64_t>(), rounds[i]["inner_steps"].get<int64_t>() * 4 * 32) << s << " " << i;
      EXPECT_EQ(sr[i]["param_hash"], rounds[i]["param_hash"]) << s << " round " << i;
    }
  }
}

}  // namespace
}  // namespace longhaul::testing
