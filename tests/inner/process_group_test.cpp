// Multi-process sites: real processes (site_rank_helper) joined over loopback Gloo, and the
// backend choice on this machine's devices.
#include "inner/process_group.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <chrono>
#include <string>

#include "inner/c10d_site_group.h"
#include "site_rank_util.h"
#include "test_support.h"

namespace longhaul::inner {
namespace {

using test_support::error_text;
using test_support::free_port;
using test_support::slurp;
using testing::backend_of;
using testing::Proc;
using testing::rank_args;
using testing::steps_of;
using testing::wait_for;

Proc spawn(const std::string& name, std::vector<std::string> args) {
  return testing::spawn_rank(name, std::move(args));
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
  EXPECT_EQ(backend_of(r0), "gloo");  // "auto" on CPU devices
  EXPECT_EQ(backend_of(r1), "gloo");

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

// Every SiteProcessGroup call across two processes, against closed-form results.
TEST(ProcessGroup, TwoProcessCollectivesGiveKnownResults) {
  const int port = free_port();
  auto args = [&](int r) {
    auto a = rank_args(r, 2, port, 0, "1");
    a.insert(a.end(), {"--collectives", "1", "--backend", "gloo"});
    return a;
  };
  Proc r0 = spawn("coll0", args(0));
  Proc r1 = spawn("coll1", args(1));
  wait_for(r0);
  wait_for(r1);
  ASSERT_EQ(r0.status, 0) << slurp(r0.err);
  ASSERT_EQ(r1.status, 0) << slurp(r1.err);
  EXPECT_NE(slurp(r0.out).find("collectives ok"), std::string::npos) << slurp(r0.out);
  EXPECT_NE(slurp(r1.out).find("collectives ok"), std::string::npos) << slurp(r1.out);
}

// "auto" with CPU devices forms a Gloo group whose collectives take CPU tensors.
TEST(ProcessGroup, AutoOnCpuDevicesPicksGloo) {
  ProcessGroupOptions o;
  o.port = free_port();
  o.timeout = std::chrono::milliseconds(5000);
  auto pg = SiteProcessGroup::connect(o, {"cpu", "cpu"});
  EXPECT_EQ(pg->backend_name(), "gloo");
  EXPECT_TRUE(pg->comm_device().is_cpu());
}

// An explicit "nccl" on a rank that cannot use it fails before any collective, saying why.
TEST(ProcessGroup, NcclRequestFailsNamingWhy) {
  ProcessGroupOptions o;
  o.port = free_port();
  o.timeout = std::chrono::milliseconds(5000);
  o.backend = "nccl";
  const std::string err = error_text<UserError>([&] { SiteProcessGroup::connect(o, {"cpu"}); });
  EXPECT_NE(err.find("backend \"nccl\""), std::string::npos) << err;
  EXPECT_NE(err.find("rank 0 of 1 cannot use NCCL: " + nccl_unavailable_reason({"cpu"})),
            std::string::npos)
      << err;
  // The reason on this build: without NCCL compiled in, the build; else the CPU device.
  EXPECT_TRUE(nccl_unavailable_reason({"cpu"}).find("built without NCCL") != std::string::npos ||
              nccl_unavailable_reason({"cpu"}) == "devices[0] = \"cpu\" is not a CUDA device")
      << nccl_unavailable_reason({"cpu"});
  EXPECT_NE(nccl_unavailable_reason({"cuda:0", "cpu"}).find("devices[1] = \"cpu\""),
            std::string::npos);
  if (!torch::cuda::is_available()) {  // a CUDA device on a machine without a GPU
    o.port = free_port();
    const std::string no_gpu =
        error_text<UserError>([&] { SiteProcessGroup::connect(o, {"cuda:0"}); });
    EXPECT_TRUE(no_gpu.find("LibTorch sees no CUDA GPU on this machine") != std::string::npos ||
                no_gpu.find("built without NCCL") != std::string::npos)
        << no_gpu;
  }
}

// Ranks asking for different explicit backends both fail, naming who asked for what.
TEST(ProcessGroup, RanksMustAgreeOnAnExplicitBackend) {
  const int port = free_port();
  auto a0 = rank_args(0, 2, port, 1, "1", 10000);
  auto a1 = rank_args(1, 2, port, 1, "1", 10000);
  a0.insert(a0.end(), {"--backend", "gloo"});
  a1.insert(a1.end(), {"--backend", "nccl"});
  Proc r0 = spawn("disagree0", a0);
  Proc r1 = spawn("disagree1", a1);
  wait_for(r0, std::chrono::seconds(30));
  wait_for(r1, std::chrono::seconds(30));
  EXPECT_EQ(r0.status, 2) << slurp(r0.err);
  EXPECT_EQ(r1.status, 2) << slurp(r1.err);
  for (const Proc* p : {&r0, &r1}) {
    const std::string err = slurp(p->err);
    EXPECT_NE(err.find("rank 0 asks for gloo, rank 1 for nccl"), std::string::npos) << err;
  }
}

}  // namespace
}  // namespace longhaul::inner
