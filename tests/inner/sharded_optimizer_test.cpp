// ZeRO-1 inside a multi-process site (issue 13 §3): real processes (site_rank_helper running the
// real Trainer) joined over loopback Gloo, sharded against unsharded, resumed from their
// checkpoints, and the optimizer memory per rank.
#include "inner/sharded_optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>

#include "common/atomic_file.h"
#include "common/error.h"
#include "inner/checkpoint.h"
#include "inner/flat_params.h"
#include "inner/trainer.h"
#include "site_rank_util.h"
#include "test_support.h"
#include "trainer_test_util.h"

namespace longhaul::inner {
namespace {

namespace fs = std::filesystem;
using test_support::free_port;
using test_support::slurp;
using testing::Proc;
using testing::StepLine;

TEST(ShardLayout, SplitsTheFlatVectorIntoWEqualPaddedRanges) {
  const ShardLayout a = ShardLayout::make(10, 3, 0), b = ShardLayout::make(10, 3, 1),
                    c = ShardLayout::make(10, 3, 2);
  EXPECT_EQ(a.shard, 4);
  EXPECT_EQ(a.begin(), 0);
  EXPECT_EQ(a.end(), 4);
  EXPECT_EQ(b.begin(), 4);
  EXPECT_EQ(b.end(), 8);
  EXPECT_EQ(c.begin(), 8);
  EXPECT_EQ(c.end(), 10);  // the last rank's shard is padded, not its range
  const ShardLayout lone = ShardLayout::make(1, 2, 1);
  EXPECT_EQ(lone.begin(), lone.end());  // more ranks than elements: an empty shard
  EXPECT_EQ(a.to_json().dump(), R"({"elements":10,"rank":0,"shard":4,"world_size":3})");
  EXPECT_THROW(ShardLayout::make(10, 2, 2), InvariantError);
}

struct RankRun {
  std::vector<StepLine> steps;
  int64_t state_bytes = -1;
  std::vector<float> params;
};

std::vector<float> read_floats(const fs::path& p) {
  const std::string s = read_file(p);
  std::vector<float> v(s.size() / sizeof(float));
  std::memcpy(v.data(), s.data(), v.size() * sizeof(float));
  return v;
}

int64_t state_bytes_of(const Proc& p) {
  std::istringstream in(slurp(p.out));
  for (std::string w; in >> w;)
    if (w == "state_bytes") {
      int64_t b = -1;
      in >> b;
      return b;
    }
  return -1;
}

// Runs a 2-rank site of the real Trainer for `steps` steps; `tag` names its files in `dir`.
std::vector<RankRun> run_site(const fs::path& dir, const std::string& tag, bool sharded, int64_t steps,
                              bool load = false, bool save = false) {
  const fs::path cfg = dir / (tag + ".toml");
  testing::write_text(cfg, testing::tiny_config_toml(testing::tiny_corpus_dir().string()) +
                               "shard_optimizer = " + (sharded ? "true" : "false") + "\n");
  const int port = free_port();
  std::vector<Proc> procs;
  for (int r = 0; r < 2; ++r) {
    std::vector<std::string> args = {"--rank", std::to_string(r), "--world-size", "2", "--rendezvous",
                                     "127.0.0.1:" + std::to_string(port), "--timeout-ms", "20000",
                                     "--steps", std::to_string(steps), "--config", cfg.string(),
                                     "--dump", (dir / (tag + "-" + std::to_string(r) + ".f32")).string()};
    const std::string ckpt = (dir / ("sharded-" + std::to_string(r) + ".ckpt")).string();
    if (load) args.insert(args.end(), {"--load", ckpt});
    if (save) args.insert(args.end(), {"--save", ckpt});
    procs.push_back(testing::spawn_rank(tag + "-" + std::to_string(r), args));
  }
  std::vector<RankRun> out(2);
  for (int r = 0; r < 2; ++r) {
    testing::wait_for(procs[r], std::chrono::seconds(120));
    EXPECT_EQ(procs[r].status, 0) << slurp(procs[r].err);
    out[r].steps = testing::steps_of(procs[r]);
    out[r].state_bytes = state_bytes_of(procs[r]);
    out[r].params = read_floats(dir / (tag + "-" + std::to_string(r) + ".f32"));
  }
  return out;
}

// A 2-rank sharded site trains as an unsharded one (losses and parameters to 1e-5 over 20
// steps), its ranks stay bitwise identical, and each rank holds half the AdamW moments.
TEST(ShardedOptimizer, TwoRankShardedSiteMatchesUnshardedAndHalvesOptimizerMemory) {
  const fs::path dir = testing::scratch_dir("sharded_vs_plain");
  const int64_t steps = 20;
  const auto plain = run_site(dir, "plain", false, steps);
  const auto shard = run_site(dir, "shard", true, steps);
  ASSERT_EQ(plain[0].steps.size(), size_t(steps));
  ASSERT_EQ(shard[0].steps.size(), size_t(steps));
  ASSERT_EQ(shard[1].steps.size(), size_t(steps));
  for (size_t s = 0; s < size_t(steps); ++s) {
    EXPECT_NEAR(shard[0].steps[s].loss, plain[0].steps[s].loss, 1e-5) << "step " << s;
    EXPECT_EQ(shard[0].steps[s].hash, shard[1].steps[s].hash) << "step " << s;  // all-gathered
  }
  EXPECT_NE(shard[0].steps.front().loss, shard[0].steps.back().loss);  // it trained
  ASSERT_EQ(plain[0].params.size(), shard[0].params.size());
  ASSERT_FALSE(plain[0].params.empty());
  double max_diff = 0;
  for (size_t i = 0; i < plain[0].params.size(); ++i)
    max_diff = std::max(max_diff, double(std::abs(plain[0].params[i] - shard[0].params[i])));
  EXPECT_LE(max_diff, 1e-5);
  EXPECT_EQ(shard[0].params, shard[1].params);

  // Optimizer memory: the two shards' moments add up to the unsharded rank's, each at most
  // 8 * ceil(N / 2) bytes (exp_avg + exp_avg_sq, fp32).
  const int64_t n = int64_t(plain[0].params.size());
  EXPECT_EQ(plain[0].state_bytes, 8 * n);
  EXPECT_EQ(shard[0].state_bytes + shard[1].state_bytes, plain[0].state_bytes);
  for (int r = 0; r < 2; ++r) {
    EXPECT_LE(shard[r].state_bytes, 8 * ((n + 1) / 2)) << "rank " << r;
    EXPECT_GE(shard[r].state_bytes, 8 * (n / 2) - 8) << "rank " << r;
  }
}

// 10 steps, checkpoint (each rank its shard), 10 more in fresh processes == 20 straight (to
// 1e-5: the ranks' split of the batch follows measured rates, so the gradient sum's order may
// differ; a lost AdamW state would be off by ~lr). A checkpoint of another layout is refused,
// naming both layouts.
TEST(ShardedOptimizer, ResumesFromItsCheckpointAndRefusesAnotherLayout) {
  const fs::path dir = testing::scratch_dir("sharded_resume");
  const auto straight = run_site(dir, "straight", true, 20);
  run_site(dir, "first", true, 10, /*load=*/false, /*save=*/true);
  const auto second = run_site(dir, "second", true, 10, /*load=*/true);
  ASSERT_EQ(straight[0].steps.size(), 20u);
  ASSERT_EQ(second[0].steps.size(), 10u);
  for (size_t s = 0; s < 10; ++s) {
    EXPECT_NEAR(second[0].steps[s].loss, straight[0].steps[10 + s].loss, 1e-5) << "step " << 10 + s;
    EXPECT_EQ(second[0].steps[s].hash, second[1].steps[s].hash) << "step " << 10 + s;
  }
  ASSERT_EQ(second[0].params.size(), straight[0].params.size());
  double max_diff = 0;
  for (size_t i = 0; i < second[0].params.size(); ++i)
    max_diff = std::max(max_diff, double(std::abs(second[0].params[i] - straight[0].params[i])));
  EXPECT_LE(max_diff, 1e-5);

  const fs::path ckpt = dir / "sharded-1.ckpt";
  const auto meta = read_checkpoint_meta(ckpt);
  ASSERT_TRUE(meta.optimizer_shard.is_object()) << meta.optimizer_shard.dump();
  EXPECT_EQ(meta.optimizer_shard.at("rank"), 1);
  EXPECT_EQ(meta.optimizer_shard.at("world_size"), 2);

  // An unsharded single process cannot take rank 1's half of the AdamW state.
  auto cfg = testing::tiny_config(testing::tiny_corpus_dir().string());
  Trainer alone(cfg, std::make_shared<Corpus>(load_corpus(cfg.data)));
  std::string msg;
  try {
    alone.load_checkpoint(ckpt);
  } catch (const DataError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("sharded-1.ckpt: checkpoint's optimizer state is {\"elements\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("but this process runs unsharded"), std::string::npos) << msg;
  // Nor does rank 0 of the same layout take rank 1's file.
  const auto n = int64_t(param_manifest(*alone.model()).total_elements());
  msg.clear();
  try {
    read_checkpoint(ckpt, *alone.model(), alone.optimizer(), cfg.model, torch::kCPU,
                    ShardLayout::make(n, 2, 0).to_json());
  } catch (const DataError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("\"rank\":0"), std::string::npos) << msg;
}

}  // namespace
}  // namespace longhaul::inner
