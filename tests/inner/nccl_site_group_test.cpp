// The NCCL site process group (inner/nccl_site_group.cpp). Every test needs a CUDA GPU and a
// build with NCCL (GTEST_SKIP otherwise); the two-process ones need one GPU per rank.
#include <gtest/gtest.h>

#include <chrono>

#include <torch/cuda.h>

#include "inner/c10d_site_group.h"
#include "inner/process_group.h"
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
using testing::spawn_rank;
using testing::steps_of;
using testing::wait_for;

// Skips unless this build has NCCL and LibTorch sees at least `gpus` GPUs.
#define REQUIRE_NCCL_GPUS(gpus)                                                                  \
  do {                                                                                           \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU";                             \
    if (static_cast<int>(torch::cuda::device_count()) < (gpus))                                  \
      GTEST_SKIP() << "needs " << (gpus) << " GPUs, " << torch::cuda::device_count() << " seen"; \
    if (const auto why = nccl_unavailable_reason({"cuda:0"}); !why.empty()) GTEST_SKIP() << why; \
  } while (0)

ProcessGroupOptions one_rank(const std::string& backend) {
  ProcessGroupOptions o;
  o.port = free_port();
  o.timeout = std::chrono::milliseconds(20000);
  o.backend = backend;
  return o;
}

TEST(NcclSiteGroup, OneRankCollectivesRunOnItsGpu) {
  REQUIRE_NCCL_GPUS(1);
  auto pg = SiteProcessGroup::connect(one_rank("nccl"), {"cuda:0"});
  ASSERT_EQ(pg->backend_name(), "nccl");
  ASSERT_EQ(pg->comm_device(), torch::Device(torch::kCUDA, 0));
  const auto on = torch::TensorOptions().dtype(torch::kFloat32).device(pg->comm_device());
  auto t = torch::tensor({1.5f, -2.5f}, on);
  pg->all_reduce_sum(t);
  EXPECT_TRUE(t.is_cuda());
  EXPECT_TRUE(t.cpu().equal(torch::tensor({1.5f, -2.5f})));
  auto b = torch::arange(4, on);
  pg->broadcast(b, 0);
  EXPECT_TRUE(b.cpu().equal(torch::arange(4, torch::kFloat32)));
  EXPECT_EQ(pg->all_gather(3.25), std::vector<double>{3.25});
  EXPECT_EQ(pg->all_gather(int64_t{1} << 40), std::vector<int64_t>{int64_t{1} << 40});
  pg->barrier();
  // A CPU tensor is a caller bug on an NCCL group: no silent host round trip.
  auto cpu = torch::zeros({2});
  EXPECT_THROW(pg->all_reduce_sum(cpu), InvariantError);
}

TEST(NcclSiteGroup, AutoPicksNcclWhenEveryDeviceIsCuda) {
  REQUIRE_NCCL_GPUS(1);
  auto pg = SiteProcessGroup::connect(one_rank("auto"), {"cuda:0", "cuda:0"});
  EXPECT_EQ(pg->backend_name(), "nccl");
  auto mixed = SiteProcessGroup::connect(one_rank("auto"), {"cuda:0", "cpu"});
  EXPECT_EQ(mixed->backend_name(), "gloo");
}

// Two ranks on one GPU cannot form an NCCL group: "auto" falls back to Gloo, "nccl" fails.
TEST(NcclSiteGroup, RanksSharingOneGpuFallBackToGloo) {
  REQUIRE_NCCL_GPUS(1);
  for (const std::string backend : {"auto", "nccl"}) {
    const int port = free_port();
    auto args = [&](int r) {
      auto a = rank_args(r, 2, port, 0, "1");
      a.insert(a.end(), {"--collectives", "1", "--device", "cuda:0", "--backend", backend});
      return a;
    };
    Proc r0 = spawn_rank("share0-" + backend, args(0));
    Proc r1 = spawn_rank("share1-" + backend, args(1));
    wait_for(r0);
    wait_for(r1);
    if (backend == "auto") {
      ASSERT_EQ(r0.status, 0) << slurp(r0.err);
      ASSERT_EQ(r1.status, 0) << slurp(r1.err);
      EXPECT_EQ(backend_of(r0), "gloo");
      EXPECT_EQ(backend_of(r1), "gloo");
    } else {
      EXPECT_EQ(r0.status, 2) << slurp(r0.err);
      EXPECT_EQ(r1.status, 2) << slurp(r1.err);
      EXPECT_NE(slurp(r0.err).find("would share one GPU"), std::string::npos) << slurp(r0.err);
    }
  }
}

TEST(NcclSiteGroup, TwoProcessCollectivesGiveKnownResults) {
  REQUIRE_NCCL_GPUS(2);
  const int port = free_port();
  auto args = [&](int r) {
    auto a = rank_args(r, 2, port, 0, "1");
    a.insert(a.end(),
             {"--collectives", "1", "--device", "cuda:" + std::to_string(r), "--backend", "nccl"});
    return a;
  };
  Proc r0 = spawn_rank("ncoll0", args(0));
  Proc r1 = spawn_rank("ncoll1", args(1));
  wait_for(r0);
  wait_for(r1);
  ASSERT_EQ(r0.status, 0) << slurp(r0.err);
  ASSERT_EQ(r1.status, 0) << slurp(r1.err);
  EXPECT_EQ(backend_of(r0), "nccl");
  EXPECT_NE(slurp(r1.out).find("collectives ok"), std::string::npos) << slurp(r1.out);
}

// As ProcessGroup.TwoProcessSiteMatchesOneProcessSite, GPU to GPU: a 2-process NCCL site
// trains like a 1-process site on one GPU ("auto" picks NCCL on all-CUDA ranks).
TEST(NcclSiteGroup, TwoProcessSiteMatchesOneProcessSite) {
  REQUIRE_NCCL_GPUS(2);
  const int64_t steps = 4;
  Proc solo = spawn_rank("nsolo", {"--steps", std::to_string(steps), "--batch", "10", "--seed", "4",
                                   "--device", "cuda:0"});
  wait_for(solo);
  ASSERT_EQ(solo.status, 0) << slurp(solo.err);
  const int port = free_port();
  auto a0 = rank_args(0, 2, port, steps, "1");
  auto a1 = rank_args(1, 2, port, steps, "1,2");
  a0.insert(a0.end(), {"--device", "cuda:0"});
  a1.insert(a1.end(), {"--device", "cuda:1"});
  Proc r0 = spawn_rank("nr0", a0);
  Proc r1 = spawn_rank("nr1", a1);
  wait_for(r0);
  wait_for(r1);
  ASSERT_EQ(r0.status, 0) << slurp(r0.err);
  ASSERT_EQ(r1.status, 0) << slurp(r1.err);
  EXPECT_EQ(backend_of(r0), "nccl");
  const auto a = steps_of(solo), b = steps_of(r0), c = steps_of(r1);
  ASSERT_EQ(a.size(), static_cast<size_t>(steps)) << slurp(solo.out);
  ASSERT_EQ(b.size(), a.size()) << slurp(r0.out);
  ASSERT_EQ(c.size(), a.size()) << slurp(r1.out);
  for (size_t s = 0; s < a.size(); ++s) {
    // GPU kernels sum the split batch in another order than the whole one: 1e-4, not 1e-5.
    EXPECT_NEAR(b[s].loss, a[s].loss, 1e-4) << "step " << s;
    EXPECT_EQ(b[s].loss, c[s].loss) << "step " << s;  // all-reduced: identical bits
    EXPECT_EQ(b[s].hash, c[s].hash) << "step " << s;
  }
  EXPECT_NE(a.front().loss, a.back().loss);
}

}  // namespace
}  // namespace longhaul::inner
