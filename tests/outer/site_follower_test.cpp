// Rank 0's side of a multi-process site (outer/site_follower.h): its first-round wait for the
// followers is bounded by site.follower_ready_timeout_s, which is read and validated with the
// site's other keys. Two ranks of a real Gloo group, in one process.
#include "outer/site_follower.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "common/error.h"
#include "inner/corpus.h"
#include "inner/process_group.h"
#include "inner/trainer.h"
#include "outer/site_config.h"
#include "test_support.h"

namespace longhaul::outer {
namespace {

namespace fs = std::filesystem;
using test_support::error_text;

fs::path write_site_toml(const std::string& name, const std::string& extra_site_keys) {
  const fs::path dir =
      fs::temp_directory_path() / ("lh_follower_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path p = dir / name;
  std::ofstream(p) << "[site]\nid = \"site-a\"\n"
                   << extra_site_keys << "\n[data]\npath = \"/some/corpus\"\n";
  return p;
}

TEST(SiteFollower, ReadyTimeoutIsAValidatedSiteKey) {
  EXPECT_DOUBLE_EQ(
      read_site_config(write_site_toml("default.toml", ""), {}).follower_ready_timeout_s, 600);
  EXPECT_DOUBLE_EQ(
      read_site_config(write_site_toml("set.toml", "follower_ready_timeout_s = 1800"), {})
          .follower_ready_timeout_s,
      1800);
  const auto bad = write_site_toml("bad.toml", "follower_ready_timeout_s = 0");
  const std::string err = error_text<ConfigError>([&] { read_site_config(bad, {}); });
  EXPECT_NE(
      err.find(
          "bad.toml: key 'site.follower_ready_timeout_s' = 0: expected a number in (0, 86400]"),
      std::string::npos)
      << err;
}

// Rank 1 joins the group but never builds its model: rank 0 gives up after the configured
// wait, naming rank 1 and the key, instead of after a fixed 10 minutes.
TEST(SiteFollower, FirstRoundWaitsAtMostTheReadyTimeout) {
  inner::ProcessGroupOptions o;
  o.world_size = 2;
  o.port = test_support::free_port();
  o.timeout = std::chrono::milliseconds(10000);
  std::unique_ptr<inner::SiteProcessGroup> rank1;
  std::thread joiner([&] {
    auto o1 = o;
    o1.rank = 1;
    rank1 = inner::SiteProcessGroup::connect(o1);
  });
  auto rank0 = inner::SiteProcessGroup::connect(o);
  joiner.join();

  inner::TrainConfig cfg;
  cfg.model.n_layer = 1;
  cfg.model.n_head = 2;
  cfg.model.n_embd = 16;
  cfg.model.block_size = 16;
  cfg.data.path = std::string(LONGHAUL_SOURCE_DIR) + "/tests/data/tiny_corpus";
  cfg.data.block_size = 16;
  cfg.train.batch_size = 2;
  cfg.train.threads = 1;
  auto corpus = std::make_shared<const inner::Corpus>(inner::load_corpus(cfg.data));
  inner::Trainer trainer(cfg, corpus, rank0.get());

  FollowerLink link(*rank0, std::chrono::duration<double>(0.3));
  const auto t0 = std::chrono::steady_clock::now();
  const std::string err = error_text<inner::RankError>(
      [&] { link.start_round(1, 2, 2, cfg.model.to_json(), 0, trainer); });
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(
      err.find("rank 1 of 2 did not build its model within 0.3 s (site.follower_ready_timeout_s"),
      std::string::npos)
      << err;
  EXPECT_LT(took, 5.0);
  rank1.reset();  // rank 1 leaves first: rank 0 (the store) waits for it to
}

}  // namespace
}  // namespace longhaul::outer
