// Multi-process sites: real processes (site_rank_helper) joined over loopback Gloo.
#include "inner/process_group.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include "test_support.h"

extern char** environ;

namespace longhaul::inner {
namespace {

namespace fs = std::filesystem;

using test_support::free_port;

struct Proc {
  pid_t pid = -1;
  fs::path out, err;
  int status = -1;
};

fs::path work_dir() {
  fs::path d = fs::temp_directory_path() / ("lh_pg_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

Proc spawn(const std::string& name, std::vector<std::string> args) {
  Proc p;
  p.out = work_dir() / (name + ".out");
  p.err = work_dir() / (name + ".err");
  args.insert(args.begin(), LONGHAUL_SITE_RANK_HELPER);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, p.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, p.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int rc = posix_spawn(&p.pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_EQ(rc, 0) << "spawn " << argv[0];
  return p;
}

// Waits at most `limit`; kills and fails the test past it (a hang is a failure).
void wait_for(Proc& p, std::chrono::seconds limit = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int st = 0;
    if (::waitpid(p.pid, &st, WNOHANG) == p.pid) {
      p.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, &st, 0);
      ADD_FAILURE() << "process " << p.pid << " hung past " << limit.count() << " s";
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

using test_support::slurp;

struct StepLine {
  double loss;
  std::string hash, ranks;
};

std::vector<StepLine> steps_of(const Proc& p) {
  std::vector<StepLine> out;
  std::istringstream in(slurp(p.out));
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::string w, k1, k2, k3;
    int64_t s;
    StepLine l;
    if (ls >> w >> s >> k1 >> l.loss >> k2 >> l.hash >> k3 >> l.ranks && w == "step") out.push_back(l);
  }
  return out;
}

std::vector<std::string> rank_args(int rank, int world, int port, int64_t steps, const std::string& slowdowns,
                                   int timeout_ms = 20000) {
  return {"--rank", std::to_string(rank), "--world-size", std::to_string(world), "--rendezvous",
          "127.0.0.1:" + std::to_string(port), "--timeout-ms", std::to_string(timeout_ms),
          "--steps", std::to_string(steps), "--batch", "10", "--seed", "4", "--slowdowns", slowdowns};
}

// Issue 5 §3: a 2-process site matches a 1-process site with the same total batch and seed
// (losses to 1e-5), and the two ranks' replicas stay identical (equal hashes every step).
TEST(ProcessGroup, TwoProcessSiteMatchesOneProcessSite) {
  const int64_t steps = 4;
  Proc solo = spawn("solo", {"--steps", std::to_string(steps), "--batch", "10", "--seed", "4"});
  wait_for(solo);
  ASSERT_EQ(solo.status, 0) << slurp(solo.err);

  const int port = free_port();
  // Rank 1 has two CPU devices, one emulated 2x slower: a mixed site across processes.
  Proc r0 = spawn("r0", rank_args(0, 2, port, steps, "1"));
  Proc r1 = spawn("r1", rank_args(1, 2, port, steps, "1,2"));
  wait_for(r0);
  wait_for(r1);
  ASSERT_EQ(r0.status, 0) << slurp(r0.err);
  ASSERT_EQ(r1.status, 0) << slurp(r1.err);

  const auto a = steps_of(solo), b = steps_of(r0), c = steps_of(r1);
  ASSERT_EQ(a.size(), static_cast<size_t>(steps)) << slurp(solo.out);
  ASSERT_EQ(b.size(), a.size()) << slurp(r0.out);
  ASSERT_EQ(c.size(), a.size()) << slurp(r1.out);
  for (size_t s = 0; s < a.size(); ++s) {
    EXPECT_NEAR(b[s].loss, a[s].loss, 1e-5) << "step " << s;
    EXPECT_EQ(b[s].loss, c[s].loss) << "step " << s;  // all-reduced: identical bits
    EXPECT_EQ(b[s].hash, c[s].hash) << "step " << s;  // replicas identical across ranks
    EXPECT_EQ(b[s].ranks, c[s].ranks) << "step " << s;
  }
  // Losses are real training: they change from step to step.
  EXPECT_NE(a.front().loss, a.back().loss);
}

// Issue 5 §3: a rank that never arrives makes the site fail, naming it, within the timeout.
TEST(ProcessGroup, MissingRankTimesOutNamingIt) {
  const int port = free_port();
  const auto t0 = std::chrono::steady_clock::now();
  Proc r0 = spawn("missing", rank_args(0, 2, port, 2, "1", /*timeout_ms=*/1500));
  wait_for(r0, std::chrono::seconds(30));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r0.status, 2);
  const std::string err = slurp(r0.err);
  EXPECT_NE(err.find("rank 1 of 2 did not arrive at 127.0.0.1:" + std::to_string(port) + " within 1500 ms"),
            std::string::npos) << err;
  EXPECT_LT(took, 20.0);
}

// A rank that dies mid-run: the survivor fails with an error naming it instead of hanging.
TEST(ProcessGroup, DeadRankIsNamed) {
  const int port = free_port();
  auto a0 = rank_args(0, 2, port, 5, "1", 5000);
  auto a1 = rank_args(1, 2, port, 5, "1", 5000);
  a1.insert(a1.end(), {"--die-at-step", "2"});
  Proc r0 = spawn("dead0", a0);
  Proc r1 = spawn("dead1", a1);
  wait_for(r1);
  wait_for(r0, std::chrono::seconds(30));
  EXPECT_EQ(r1.status, 3);
  EXPECT_EQ(r0.status, 2);
  const std::string err = slurp(r0.err);
  EXPECT_NE(err.find("rank 1 of 2 stopped after"), std::string::npos) << err;
}

TEST(ProcessGroup, RendezvousSpecIsValidated) {
  ProcessGroupOptions o;
  parse_rendezvous("10.0.0.2:29501", o);
  EXPECT_EQ(o.host, "10.0.0.2");
  EXPECT_EQ(o.port, 29501);
  parse_rendezvous("[::1]:7000", o);
  EXPECT_EQ(o.host, "::1");
  for (const char* bad : {"host", "host:", ":80", "host:99999", "host:8x"})
    EXPECT_THROW(parse_rendezvous(bad, o), UserError) << bad;
  ProcessGroupOptions r;
  r.world_size = 2;
  r.rank = 2;
  EXPECT_THROW(SiteProcessGroup::connect(r), UserError);
  r.rank = 0;
  r.backend = "mpi";
  EXPECT_THROW(SiteProcessGroup::connect(r), UserError);
}

TEST(ProcessGroup, SingleRankGroupWorksInProcess) {
  ProcessGroupOptions o;
  o.port = free_port();
  o.timeout = std::chrono::milliseconds(5000);
  auto pg = SiteProcessGroup::connect(o);
  EXPECT_EQ(pg->world_size(), 1);
  auto t = torch::tensor({1.5f, 2.5f});
  pg->all_reduce_sum(t);
  EXPECT_FLOAT_EQ(t[1].item<float>(), 2.5f);
  EXPECT_EQ(pg->all_gather(3.25), std::vector<double>{3.25});
}

}  // namespace
}  // namespace longhaul::inner
