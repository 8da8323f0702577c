// The site's device path (issue 13 §2: θ_r and the residual on the model's device, Δ and its
// int8 quantization computed there, only the quantized bytes to the host), forced on the CPU
// with LONGHAUL_SITE_DEVICE_QUANTIZE=1 for one site of three: its uploads are accepted and
// counted, it holds bitwise the published θ after every round, and its residual survives in the
// checkpoint. (On a GPU the same code runs with CUDA tensors; the payload parity itself is
// tests/inner/device_quantizer_test.cpp.)
#include <gtest/gtest.h>

#include <signal.h>

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

// The device path serves runs without streaming (P = 1, τ = 0). A coordinator restarted with
// overlap on the same run asks the running site for it: the site stops with the reason
// (exit 2), instead of failing an invariant in the streaming code under its device state.
TEST(SiteDevicePath, RefusesAWelcomeThatAsksForStreaming) {
  ClusterOptions o;
  o.rounds = 1000;  // stopped by the test
  o.inner_steps = 4;
  o.min_sites = 1;
  o.start_sites = 1;
  o.sites = {"site-a"};
  Cluster c("site-device-stream", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  const int port = c.port();
  ::setenv("LONGHAUL_SITE_DEVICE_QUANTIZE", "1", 1);
  Process site = c.start_site("site-a");
  ::unsetenv("LONGHAUL_SITE_DEVICE_QUANTIZE");
  ASSERT_TRUE(c.wait_for_rounds(1, 120s)) << Cluster::tail(coord.log());
  coord.signal(SIGKILL);
  EXPECT_EQ(coord.wait(10s), 128 + SIGKILL);
  ASSERT_TRUE(c.edit_coordinator_config("inner_steps = 4", "inner_steps = 4\noverlap_steps = 1"));
  coord = c.start_coordinator(port, "-restart");
  EXPECT_EQ(site.wait(120s), 2) << Cluster::tail(site.log());
  EXPECT_NE(Cluster::tail(site.log(), size_t{1} << 22)
                .find("sync.overlap_steps = 1 but this site process keeps its state on cpu for a run without "
                      "streaming: restart the site"),
            std::string::npos)
      << Cluster::tail(site.log());
  coord.signal(SIGTERM);
  EXPECT_EQ(coord.wait(30s), 0) << Cluster::tail(coord.log());
}

}  // namespace
}  // namespace longhaul::testing
