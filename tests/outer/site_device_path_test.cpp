// The site's device path (issue 13 §2: θ_r and the residual on the model's device, Δ and its
// int8 quantization computed there, only the quantized bytes to the host), forced on the CPU
// with LONGHAUL_SITE_DEVICE_QUANTIZE=1 for one site of three: its uploads are accepted and
// counted, it holds bitwise the published θ after every round, and its residual survives in the
// checkpoint. (On a GPU the same code runs with CUDA tensors; the payload parity itself is
// tests/inner/device_quantizer_test.cpp.)
#include <gtest/gtest.h>

#include <cstdlib>

#include "outer/cluster_util.h"

namespace longhaul::testing {
namespace {

using namespace std::chrono_literals;

TEST(SiteDevicePath, ForcedOnCpuSiteStaysBitwiseWithThePublishedTheta) {
  ClusterOptions o;
  o.rounds = 3;
  o.inner_steps = 3;
  o.upload_encoding = "int8";
  Cluster c("site-device-path", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::vector<Process> sites;
  ::setenv("LONGHAUL_SITE_DEVICE_QUANTIZE", "1", 1);
  sites.push_back(c.start_site("site-a"));
  ::unsetenv("LONGHAUL_SITE_DEVICE_QUANTIZE");
  sites.push_back(c.start_site("site-b"));
  sites.push_back(c.start_site("site-c"));
  ASSERT_EQ(coord.wait(240s), 0) << Cluster::tail(coord.log());
  for (auto& p : sites) EXPECT_EQ(p.wait(60s), 0) << Cluster::tail(p.log());
  EXPECT_NE(Cluster::tail(sites[0].log(), size_t{1} << 22).find("quantized there"), std::string::npos)
      << Cluster::tail(sites[0].log());

  ASSERT_EQ(c.coordinator_rounds().size(), 3u);
  expect_hashes_agree(c, o.sites, true);
  for (const auto& s : o.sites)
    for (const auto& r : c.site_rounds(s)) EXPECT_TRUE(r["contributed"].get<bool>()) << s << ": " << r.dump();
  EXPECT_FALSE(fs::exists(c.site_dir("site-a") / "residual_backup.bin"));
}

}  // namespace
}  // namespace longhaul::testing
