// The rule that picks a multi-process site's backend (inner/backend_choice.h), on the ranks'
// posted descriptions — the same decision every rank makes at the rendezvous.
#include "inner/backend_choice.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "test_support.h"

namespace longhaul::inner {
namespace {

using test_support::error_text;

RankBackendInfo cuda_rank(const std::string& gpu, const std::string& requested = "auto") {
  RankBackendInfo i;
  i.requested = requested;
  i.gpu = gpu;
  return i;
}

RankBackendInfo cpu_rank(const std::string& requested = "auto") {
  RankBackendInfo i;
  i.requested = requested;
  i.nccl_unavailable = "devices[0] = \"cpu\" is not a CUDA device";
  return i;
}

TEST(BackendChoice, AutoPicksNcclOnlyWhenEveryRankCan) {
  EXPECT_EQ(choose_backend({cuda_rank("GPU-a")}).backend, "nccl");
  EXPECT_EQ(choose_backend({cuda_rank("GPU-a"), cuda_rank("GPU-b")}).backend, "nccl");
  EXPECT_EQ(choose_backend({cpu_rank()}).backend, "gloo");

  const auto mixed = choose_backend({cuda_rank("GPU-a"), cpu_rank()});  // a mixed-vendor site
  EXPECT_EQ(mixed.backend, "gloo");
  EXPECT_NE(mixed.why.find("rank 1 of 2 cannot use NCCL: devices[0] = \"cpu\""), std::string::npos)
      << mixed.why;

  const auto shared = choose_backend({cuda_rank("GPU-a"), cuda_rank("GPU-b"), cuda_rank("GPU-a")});
  EXPECT_EQ(shared.backend, "gloo");
  EXPECT_NE(shared.why.find("ranks 0 and 2 of 3 would share one GPU (GPU-a)"), std::string::npos)
      << shared.why;
}

TEST(BackendChoice, AnExplicitRequestWinsAndIsCheckedOnEveryRank) {
  EXPECT_EQ(choose_backend({cuda_rank("GPU-a", "gloo"), cuda_rank("GPU-b")}).backend, "gloo");
  EXPECT_EQ(choose_backend({cuda_rank("GPU-a"), cuda_rank("GPU-b", "nccl")}).backend, "nccl");

  const std::string err = error_text<UserError>([] {
    choose_backend({cuda_rank("GPU-a", "nccl"), cpu_rank()});
  });
  EXPECT_NE(
      err.find(
          "backend \"nccl\" (train.process_group_backend of rank 0) is not possible: rank 1 of 2 "
          "cannot use NCCL: devices[0] = \"cpu\" is not a CUDA device"),
      std::string::npos)
      << err;
  const std::string one = error_text<UserError>([] { choose_backend({cpu_rank("nccl")}); });
  EXPECT_NE(one.find("rank 0 of 1 cannot use NCCL"), std::string::npos) << one;

  const std::string clash = error_text<UserError>([] {
    choose_backend(
        {cuda_rank("GPU-a", "nccl"), cuda_rank("GPU-b", "gloo"), cuda_rank("GPU-c", "gloo")});
  });
  EXPECT_NE(clash.find("ranks 1, 2 ask for gloo, rank 0 for nccl"), std::string::npos) << clash;
}

TEST(BackendChoice, DescriptionsRoundTripAndGarbageIsNamed) {
  const RankBackendInfo a = cuda_rank("GPU-0123", "nccl");
  const RankBackendInfo b = RankBackendInfo::decode(a.encode(), 0);
  EXPECT_EQ(b.requested, "nccl");
  EXPECT_EQ(b.gpu, "GPU-0123");
  EXPECT_EQ(b.nccl_unavailable, "");
  for (const char* bad : {"", "{}", R"({"requested":"mpi","nccl_unavailable":"","gpu":""})"}) {
    const std::string err = error_text<UserError>([&] { RankBackendInfo::decode(bad, 3); });
    EXPECT_NE(err.find("rank 3 posted an unreadable backend description"), std::string::npos)
        << bad << ": " << err;
  }
}

}  // namespace
}  // namespace longhaul::inner
