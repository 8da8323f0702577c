// The site's [link] section (outer/site_config.h): WAN emulation keys, their ranges and defaults,
// and how they map onto the transport client's options in both directions.
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "outer/site_config.h"
#include "test_dirs.h"
#include "test_support.h"
#include "transport/channel_client.h"

namespace longhaul::outer {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test_support::error_text;

class SiteLinkConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lh_site_link_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { testing::remove_tree(dir_); }
  fs::path write(const std::string& name, const std::string& link_section) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << "[site]\nid = \"site-a\"\n[data]\npath = \"/some/corpus\"\n"
                     << link_section;
    return p;
  }
  fs::path dir_;
};

TEST_F(SiteLinkConfig, OffByDefault) {
  const SiteConfig c = read_site_config(write("default.toml", ""), {});
  EXPECT_FALSE(c.link.enabled());
  transport::ClientOptions o;
  o.rate_limit_bytes_per_s = 123;  // apply() overwrites: off means zero everywhere
  c.link.apply(o);
  EXPECT_EQ(o.rate_limit_bytes_per_s, 0u);
  EXPECT_EQ(o.added_latency, 0ms);
  EXPECT_EQ(o.receive_rate_limit_bytes_per_s, 0u);
  EXPECT_EQ(o.receive_added_latency, 0ms);
  EXPECT_NE(c.effective_toml.find("emulate_mbps"), std::string::npos) << c.effective_toml;
}

TEST_F(SiteLinkConfig, RateAndRoundTripApplyToBothDirections) {
  const SiteConfig c =
      read_site_config(write("wan.toml", "[link]\nemulate_mbps = 100\nemulate_rtt_ms = 41\n"), {});
  EXPECT_TRUE(c.link.enabled());
  EXPECT_DOUBLE_EQ(c.link.emulate_mbps, 100);
  EXPECT_EQ(c.link.emulate_rtt_ms, 41);
  transport::ClientOptions o;
  c.link.apply(o);
  EXPECT_EQ(o.rate_limit_bytes_per_s, 12'500'000u);  // 100 Mbit/s = 12.5 MB/s
  EXPECT_EQ(o.receive_rate_limit_bytes_per_s, 12'500'000u);
  EXPECT_EQ(o.added_latency, 20ms);  // the two one-way latencies add up to the round trip
  EXPECT_EQ(o.receive_added_latency, 21ms);
  // --set works like every other key; a fraction of a megabit is fine.
  const SiteConfig s = read_site_config(write("set.toml", ""), {"link.emulate_mbps=0.5"});
  EXPECT_EQ(s.link.bytes_per_s(), 62'500u);
  EXPECT_EQ(s.link.emulate_rtt_ms, 0);
  EXPECT_TRUE(s.link.enabled());
  const SiteConfig r = read_site_config(write("rtt.toml", "[link]\nemulate_rtt_ms = 80\n"), {});
  EXPECT_TRUE(r.link.enabled());
  EXPECT_EQ(r.link.bytes_per_s(), 0u);  // latency only: unpaced
}

TEST_F(SiteLinkConfig, OutOfRangeValuesNameTheKey) {
  auto err = [&](const std::string& name, const std::string& section) {
    const fs::path p = write(name, section);
    return error_text<ConfigError>([&] { read_site_config(p, {}); });
  };
  std::string e = err("neg.toml", "[link]\nemulate_mbps = -1\n");
  EXPECT_NE(e.find("neg.toml: key 'link.emulate_mbps' = -1"), std::string::npos) << e;
  e = err("tiny.toml", "[link]\nemulate_mbps = 0.001\n");
  EXPECT_NE(
      e.find(
          "key 'link.emulate_mbps' = 0.001: expected 0 (off) or a rate in [0.01, 1e6] megabits/s"),
      std::string::npos)
      << e;
  e = err("huge.toml", "[link]\nemulate_mbps = 2e6\n");
  EXPECT_NE(e.find("key 'link.emulate_mbps'"), std::string::npos) << e;
  e = err("rtt.toml", "[link]\nemulate_rtt_ms = -5\n");
  EXPECT_NE(e.find("key 'link.emulate_rtt_ms' = -5"), std::string::npos) << e;
  e = err("rtt_big.toml", "[link]\nemulate_rtt_ms = 60001\n");
  EXPECT_NE(e.find("key 'link.emulate_rtt_ms' = 60001"), std::string::npos) << e;
  e = err("typo.toml", "[link]\nemulate_mbit = 10\n");
  EXPECT_NE(e.find("link.emulate_mbit"), std::string::npos) << e;  // unknown keys are refused
}

}  // namespace
}  // namespace longhaul::outer
