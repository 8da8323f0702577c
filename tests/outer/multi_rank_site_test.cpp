// A `longhaul site` made of two processes (rank 0 talks to the coordinator, rank 1 follows it
// through the site's process group) beside an ordinary site: real binary, mutual TLS, loopback
// Gloo. Rank 1 must train every round in lockstep with rank 0 and end with the coordinator's θ.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <signal.h>

#include <fstream>
#include <map>
#include <sstream>

#include "inner/checkpoint.h"
#include "outer/cluster_util.h"
#include "test_support.h"

namespace longhaul::testing {
namespace {

using namespace std::chrono_literals;

using test_support::free_port;

using test_support::slurp;

// The command-line arguments of rank r of a two-process site meeting at `rdv`.
std::vector<std::string> rank_args(int r, const std::string& rdv, int timeout_ms) {
  return {"--rank", std::to_string(r), "--world-size", "2", "--rendezvous", rdv, "--rank-timeout-ms",
          std::to_string(timeout_ms)};
}

TEST(MultiRankSite, TwoRankSiteTrainsInLockstepAndEndsWithTheCoordinatorsTheta) {
  ClusterOptions o;
  o.rounds = 3;
  o.inner_steps = 3;
  o.min_sites = 2;
  o.start_sites = 2;
  o.sites = {"site-a", "site-b"};
  Cluster c("multirank", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  const std::string rdv = "127.0.0.1:" + std::to_string(free_port());
  auto ranked = [&](int r) { return rank_args(r, rdv, 20000); };
  Process rank0 = c.start_site("site-a", "", ranked(0));
  Process rank1 = c.start_site("site-a", "-rank1", ranked(1));
  Process b = c.start_site("site-b");
  ASSERT_EQ(coord.wait(120s), 0) << Cluster::tail(coord.log());
  EXPECT_EQ(rank0.wait(30s), 0) << Cluster::tail(rank0.log());
  EXPECT_EQ(rank1.wait(30s), 0) << Cluster::tail(rank1.log());
  EXPECT_EQ(b.wait(30s), 0) << Cluster::tail(b.log());

  // θ at the start of each round, as the coordinator published it.
  auto init = Cluster::read_events(c.coordinator_dir() / "metrics.jsonl", "init");
  ASSERT_EQ(init.size(), 1u);
  auto coord_rounds = c.coordinator_rounds();
  ASSERT_EQ(coord_rounds.size(), 3u);
  std::map<int64_t, std::string> start_theta, end_theta;
  std::string prev = init[0]["param_hash"];
  for (const auto& r : coord_rounds) {
    start_theta[r["round"]] = prev;
    end_theta[r["round"]] = prev = r["param_hash"].get<std::string>();
    EXPECT_EQ(r["sites"].size(), 2u) << r.dump();
  }

  // Rank 0: an ordinary site to the coordinator; its θ after each round is the published one.
  auto r0 = c.site_rounds("site-a");
  ASSERT_EQ(r0.size(), 3u) << Cluster::tail(rank0.log());
  std::map<int64_t, std::string> trained0;
  for (const auto& r : r0) {
    EXPECT_EQ(r["param_hash"], end_theta[r["round"]]) << r.dump();
    EXPECT_TRUE(r["contributed"].get<bool>()) << r.dump();
    trained0[r["round"]] = r["trained_hash"];
  }

  // Rank 1: started every round from the published θ and ended it bitwise equal to rank 0.
  const fs::path follower = c.site_dir("site-a") / "rank-1" / "metrics.jsonl";
  auto r1 = Cluster::read_events(follower, "round");
  ASSERT_EQ(r1.size(), 3u) << Cluster::tail(rank1.log());
  for (const auto& r : r1) {
    const int64_t k = r["round"];
    EXPECT_EQ(r["steps"], 3) << r.dump();
    EXPECT_EQ(r["theta_hash"], start_theta[k]) << r.dump();
    EXPECT_EQ(r["param_hash"], trained0[k]) << "round " << k << ": rank 1 and rank 0 trained apart";
    EXPECT_NE(r["param_hash"], r["theta_hash"]) << "round " << k << ": rank 1 did not train";
  }
  auto stop = Cluster::read_events(follower, "stop");
  ASSERT_EQ(stop.size(), 1u) << Cluster::tail(rank1.log());
  EXPECT_EQ(stop[0]["reason"], "run complete");
  EXPECT_EQ(stop[0]["param_hash"], end_theta.rbegin()->second) << "rank 1's final θ differs";
  EXPECT_EQ(slurp(rank1.log()).find("wss://"), std::string::npos) << "rank 1 talked to the coordinator";
}

// SIGTERM to rank 0 mid-run: it stops the follower (mid-round or at the next boundary) and
// both exit 0.
TEST(MultiRankSite, SigtermOnRank0StopsTheFollowerCleanly) {
  ClusterOptions o;
  o.rounds = 1000;  // stopped by the test: the run must outlast the SIGTERM however fast rounds go
  o.inner_steps = 3;
  o.min_sites = 1;
  o.start_sites = 1;
  o.sites = {"site-a"};
  Cluster c("multirank_term", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  const std::string rdv = "127.0.0.1:" + std::to_string(free_port());
  auto ranked = [&](int r) { return rank_args(r, rdv, 5000); };
  Process rank0 = c.start_site("site-a", "", ranked(0));
  Process rank1 = c.start_site("site-a", "-rank1", ranked(1));
  ASSERT_TRUE(c.wait_for_rounds(2, 60s)) << Cluster::tail(coord.log());
  rank0.signal(SIGTERM);
  EXPECT_EQ(rank0.wait(30s), 0) << Cluster::tail(rank0.log());
  EXPECT_EQ(rank1.wait(30s), 0) << Cluster::tail(rank1.log());
  auto stop = Cluster::read_events(c.site_dir("site-a") / "rank-1" / "metrics.jsonl", "stop");
  ASSERT_EQ(stop.size(), 1u) << Cluster::tail(rank1.log());
  EXPECT_NE(stop[0]["reason"], "run complete") << stop[0].dump();
  coord.signal(SIGTERM);
  EXPECT_EQ(coord.wait(30s), 0) << Cluster::tail(coord.log());
}

// A two-process streaming site (fragments exchanged while the site trains on) stopped with
// SIGTERM mid-run and restarted: rank 0 checkpoints at each upload, the follower at the same
// step (not at the end of its overlap steps), neither saves the steps trained since, so both
// resume from the same step and the run ends with every rank on the coordinator's θ.
TEST(MultiRankSite, StreamingSiteStoppedMidRunResumesBothRanksAtTheSameStep) {
  ClusterOptions o;
  o.rounds = 16;
  o.inner_steps = 6;
  o.min_sites = 1;
  o.start_sites = 1;
  o.sites = {"site-a"};
  o.coordinator_overrides = {"model.n_layer=2", "sync.fragments=2", "sync.overlap_steps=1"};
  Cluster c("multirank_stream", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  const std::string rdv = "127.0.0.1:" + std::to_string(free_port());
  auto ranked = [&](int r) { return rank_args(r, rdv, 20000); };
  Process rank0 = c.start_site("site-a", "", ranked(0));
  Process rank1 = c.start_site("site-a", "-rank1", ranked(1));
  ASSERT_TRUE(c.wait_for_rounds(4, 120s)) << Cluster::tail(coord.log());
  rank0.signal(SIGTERM);
  EXPECT_EQ(rank0.wait(30s), 0) << Cluster::tail(rank0.log());
  EXPECT_EQ(rank1.wait(30s), 0) << Cluster::tail(rank1.log());
  const auto step_of = [&](const fs::path& dir) {
    const auto p = inner::latest_checkpoint(dir);
    return p ? inner::read_checkpoint_meta(*p).step : -1;
  };
  const int64_t step0 = step_of(c.site_dir("site-a")), step1 = step_of(c.site_dir("site-a") / "rank-1");
  EXPECT_GT(step0, 0);
  EXPECT_EQ(step1, step0) << "the ranks stopped at different checkpoints";

  rank0 = c.start_site("site-a", "-restart", ranked(0));
  rank1 = c.start_site("site-a", "-rank1-restart", ranked(1));
  ASSERT_EQ(coord.wait(240s), 0) << Cluster::tail(coord.log());
  EXPECT_EQ(rank0.wait(30s), 0) << Cluster::tail(rank0.log());
  EXPECT_EQ(rank1.wait(30s), 0) << Cluster::tail(rank1.log());
  const auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 16u);
  auto stop = Cluster::read_events(c.site_dir("site-a") / "rank-1" / "metrics.jsonl", "stop");
  ASSERT_EQ(stop.size(), 2u) << Cluster::tail(rank1.log());
  EXPECT_EQ(stop[1]["reason"], "run complete");
  EXPECT_EQ(stop[1]["param_hash"], rounds.back()["param_hash"]) << "rank 1's final θ differs";
  EXPECT_EQ(step_of(c.site_dir("site-a") / "rank-1"), step_of(c.site_dir("site-a")));
}

// Rank 0 dies (SIGKILL) after a round: rank 1 fails with an error naming rank 0, within the
// rank timeout, instead of waiting for the next round forever.
TEST(MultiRankSite, FollowerFailsNamingRank0WhenRank0Dies) {
  ClusterOptions o;
  o.rounds = 1000;  // stopped by the test: the run must outlast the kill however fast rounds go
  o.inner_steps = 3;
  o.min_sites = 1;
  o.start_sites = 1;
  o.sites = {"site-a"};
  Cluster c("multirank_kill", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  const std::string rdv = "127.0.0.1:" + std::to_string(free_port());
  auto ranked = [&](int r) { return rank_args(r, rdv, 3000); };
  Process rank0 = c.start_site("site-a", "", ranked(0));
  Process rank1 = c.start_site("site-a", "-rank1", ranked(1));
  ASSERT_TRUE(c.wait_for_rounds(1, 60s)) << Cluster::tail(coord.log());
  rank0.signal(SIGKILL);
  EXPECT_EQ(rank0.wait(10s), 128 + SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(rank1.wait(30s), 2) << Cluster::tail(rank1.log());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
  EXPECT_NE(slurp(rank1.log()).find("rank 0 of 2"), std::string::npos) << Cluster::tail(rank1.log());
  coord.signal(SIGTERM);
  EXPECT_EQ(coord.wait(30s), 0) << Cluster::tail(coord.log());
}

// Rank 0 never comes: rank 1 fails with an error naming it, within the timeout.
TEST(MultiRankSite, FollowerWithoutRank0FailsNamingIt) {
  ClusterOptions o;
  o.sites = {"site-a"};
  Cluster c("multirank_norank0", o);
  const std::string rdv = "127.0.0.1:" + std::to_string(free_port());
  Process rank1 = c.start_site("site-a", "-rank1",
                               {"--rank", "1", "--world-size", "2", "--rendezvous", rdv, "--rank-timeout-ms", "1500"});
  EXPECT_EQ(rank1.wait(30s), 2) << Cluster::tail(rank1.log());
  EXPECT_NE(slurp(rank1.log()).find("rank 0"), std::string::npos) << Cluster::tail(rank1.log());
}

}  // namespace
}  // namespace longhaul::testing
