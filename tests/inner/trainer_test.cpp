// The inner loop: loss falls; gradient accumulation, clipping, the lr schedule, evaluation,
// bitwise resume and export, each checked on a tiny CPU model; and `longhaul train` end to end.
#include "inner/trainer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "common/config_reader.h"
#include "inner/device.h"
#include "inner/flat_params.h"
#include "inner/lr_schedule.h"
#include "inner/safetensors_io.h"
#include "inner/trainer_test_util.h"

namespace longhaul::inner {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<const Corpus> corpus_of(const TrainConfig& cfg) {
  return std::make_shared<const Corpus>(load_corpus(cfg.data));
}

TrainConfig tiny() { return testing::tiny_config(testing::tiny_corpus_dir().string()); }

double grad_norm(torch::nn::Module& m) {
  double s = 0;
  for (auto& p : m.parameters())
    if (p.grad().defined()) s += p.grad().pow(2).sum().item<double>();
  return std::sqrt(s);
}

TEST(Trainer, LossFallsOnASmallCorpus) {
  auto cfg = tiny();
  cfg.train.steps = cfg.optim.decay_steps = 60;
  cfg.optim.lr = 1e-2;
  cfg.optim.min_lr = 1e-3;
  Trainer t(cfg, corpus_of(cfg));
  const double val_before = t.evaluate();
  std::vector<double> losses;
  t.train_steps(60, [&](const StepResult& r) { losses.push_back(r.loss); });
  ASSERT_EQ(losses.size(), 60u);
  double tail = 0;
  for (size_t i = 50; i < 60; ++i) tail += losses[i] / 10;
  EXPECT_NEAR(losses[0], std::log(256.0), 0.3);  // ~uniform over bytes at init
  EXPECT_LT(tail, losses[0] - 1.0);
  EXPECT_LT(t.evaluate(), val_before - 1.0);
}

TEST(Trainer, GradAccumulationEqualsOneLargerBatch) {
  // 2 micro-batches of 2 draw the same 4 windows as 1 batch of 4 (the sampler's stream), so
  // the mean gradients, and the parameters after one step, agree up to float rounding.
  auto a_cfg = tiny(), b_cfg = tiny();
  a_cfg.train.batch_size = 4;
  a_cfg.train.grad_accum = 1;
  b_cfg.train.batch_size = 2;
  b_cfg.train.grad_accum = 2;
  Trainer a(a_cfg, corpus_of(a_cfg)), b(b_cfg, corpus_of(b_cfg));
  EXPECT_EQ(a.tokens_per_step(), b.tokens_per_step());
  auto ra = a.step(), rb = b.step();
  EXPECT_NEAR(ra.loss, rb.loss, 1e-5);
  EXPECT_NEAR(ra.grad_norm, rb.grad_norm, 1e-4 * ra.grad_norm);
  auto fa = params_to_flat(*a.model()), fb = params_to_flat(*b.model());
  ASSERT_EQ(fa.size(), fb.size());
  double max_diff = 0;
  for (size_t i = 0; i < fa.size(); ++i) max_diff = std::max(max_diff, double(std::abs(fa[i] - fb[i])));
  EXPECT_LT(max_diff, 1e-6);
  EXPECT_EQ(b.tokens_trained(), 2 * 2 * b_cfg.model.block_size);
}

TEST(Trainer, ClippingBoundsTheGlobalGradientNorm) {
  auto cfg = tiny();
  cfg.optim.grad_clip = 0.05;
  Trainer clipped(cfg, corpus_of(cfg));
  auto r = clipped.step();
  ASSERT_GT(r.grad_norm, 0.05);  // the raw norm, reported before clipping
  EXPECT_NEAR(grad_norm(*clipped.model()), 0.05, 1e-4);

  cfg.optim.grad_clip = 0;  // off
  Trainer free(cfg, corpus_of(cfg));
  auto rf = free.step();
  EXPECT_NEAR(grad_norm(*free.model()), rf.grad_norm, 1e-5 * rf.grad_norm);
  EXPECT_DOUBLE_EQ(rf.grad_norm, r.grad_norm);  // same init, same batch
}

TEST(Trainer, LearningRateFollowsTheSchedule) {
  auto cfg = tiny();
  cfg.train.steps = cfg.optim.decay_steps = 12;
  cfg.optim.warmup_steps = 4;
  Trainer t(cfg, corpus_of(cfg));
  std::vector<double> lrs;
  t.train_steps(14, [&](const StepResult& r) {
    lrs.push_back(r.lr);
    for (auto& g : t.optimizer().param_groups())
      EXPECT_DOUBLE_EQ(static_cast<torch::optim::AdamWOptions&>(g.options()).lr(), r.lr);
  });
  for (int64_t s = 0; s < 14; ++s) EXPECT_DOUBLE_EQ(lrs[s], lr_at(s, cfg.optim)) << s;
  EXPECT_LT(lrs[0], lrs[3]);                       // warmup rises
  EXPECT_NEAR(lrs[4], cfg.optim.lr, 1e-12);        // peak
  EXPECT_DOUBLE_EQ(lrs[13], cfg.optim.min_lr);     // floor after decay_steps
}

TEST(Trainer, EvaluationIsAFixedSetAndLeavesTrainingUntouched) {
  auto cfg = tiny();
  auto corpus = corpus_of(cfg);
  Trainer a(cfg, corpus), b(cfg, corpus);
  a.train_steps(3);
  b.train_steps(3);
  const double v1 = a.evaluate(), v2 = a.evaluate();
  EXPECT_EQ(v1, v2);  // same windows, same weights
  EXPECT_TRUE(a.model()->is_training());
  // Evaluating did not advance the sampler or the RNG: a and b continue identically.
  EXPECT_EQ(a.step().loss, b.step().loss);
  EXPECT_EQ(params_hash(*a.model()), params_hash(*b.model()));
}

TEST(Trainer, ResumeIsBitwiseIdenticalToAnUninterruptedRun) {
  auto dir = testing::scratch_dir("trainer_resume");
  auto cfg = tiny();
  cfg.train.grad_accum = 2;
  cfg.model.dropout = 0.1;  // exercises the checkpointed RNG as well
  auto corpus = corpus_of(cfg);
  const int k = 5, m = 6;

  std::vector<double> straight;
  {
    Trainer t(cfg, corpus);
    t.train_steps(k + m, [&](const StepResult& r) { straight.push_back(r.loss); });
  }
  {
    Trainer first(cfg, corpus);
    first.train_steps(k);
    first.save_checkpoint(checkpoint_path(dir, k));
  }
  torch::manual_seed(999);  // a new process would start from another RNG state
  Trainer resumed(cfg, corpus);
  resumed.load_checkpoint(checkpoint_path(dir, k));
  std::vector<double> after;
  resumed.train_steps(m, [&](const StepResult& r) { after.push_back(r.loss); });
  for (int i = 0; i < m; ++i) EXPECT_EQ(after[i], straight[k + i]) << "step " << k + i + 1;
}

TEST(Trainer, ExportLoadsBackIdentically) {
  auto dir = testing::scratch_dir("trainer_export");
  auto cfg = tiny();
  Trainer t(cfg, corpus_of(cfg));
  t.train_steps(2);
  export_model(t.model(), dir);
  Gpt back = load_exported_model(dir);
  EXPECT_EQ(back->config(), cfg.model);
  EXPECT_EQ(params_hash(*back), params_hash(*t.model()));
}

TEST(Trainer, CudaStepsWithBf16AutocastWhenAGpuIsPresent) {
  if (!cuda_available()) GTEST_SKIP() << "no GPU";
  auto cfg = tiny();
  cfg.train.device = "cuda";
  cfg.train.bf16_autocast = true;
  cfg.train.grad_accum = 2;
  Trainer t(cfg, corpus_of(cfg));
  auto s = t.train_steps(5);
  EXPECT_TRUE(std::isfinite(s.last_loss));
  EXPECT_TRUE(std::isfinite(t.evaluate()));
  EXPECT_TRUE(t.model()->parameters()[0].is_cuda());
}

// ---- `longhaul train`, the real binary ----

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(TrainCli, RunDirHoldsMetricsCheckpointsExportAndEffectiveConfig) {
  auto dir = testing::scratch_dir("cli_run");
  testing::write_text(dir / "t.toml", testing::tiny_config_toml(testing::tiny_corpus_dir().string()));
  auto res = testing::run_longhaul({"train", "--config", (dir / "t.toml").string(), "--run-dir",
                                    (dir / "run").string(), "--set", "train.steps=12",
                                    "--set", "train.log_every=2", "--set", "train.eval_every=5",
                                    "--set", "train.checkpoint_every=4", "--set", "train.keep_checkpoints=2"});
  ASSERT_EQ(res.status, 0) << res.output;
  const fs::path run = dir / "run";
  std::vector<int64_t> step_lines, eval_lines;
  for (auto& j : read_jsonl(run / "metrics.jsonl")) {
    if (j["event"] == "step") {
      step_lines.push_back(j["step"]);
      for (auto key : {"loss", "lr", "tokens", "tokens_per_s", "elapsed_s"}) EXPECT_TRUE(j.contains(key)) << key;
      EXPECT_EQ(j["tokens"], j["step"].get<int64_t>() * 4 * 16);
      EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
    } else {
      ASSERT_EQ(j["event"], "eval");
      eval_lines.push_back(j["step"]);
      EXPECT_GT(j["val_loss"].get<double>(), 0);
    }
  }
  EXPECT_EQ(step_lines, (std::vector<int64_t>{2, 4, 6, 8, 10, 12}));
  EXPECT_EQ(eval_lines, (std::vector<int64_t>{5, 10, 12}));
  EXPECT_FALSE(fs::exists(checkpoint_path(run, 4)));  // pruned: keep 2
  EXPECT_TRUE(fs::exists(checkpoint_path(run, 8)));
  EXPECT_TRUE(fs::exists(checkpoint_path(run, 12)));
  EXPECT_TRUE(fs::exists(run / "model.safetensors"));
  EXPECT_EQ(load_exported_model(run)->config().n_embd, 16);
  // The effective config is complete and reads back to the same run.
  auto r = ConfigReader::from_file(run / "config.effective.toml");
  TrainConfig eff = read_train_config(r);
  EXPECT_EQ(eff.train.steps, 12);
  EXPECT_EQ(eff.optim.warmup_steps, 3);
  EXPECT_EQ(eff.model, tiny().model);
  // Without --resume the run dir is not overwritten.
  auto again = testing::run_longhaul({"train", "--config", (dir / "t.toml").string(), "--run-dir", run.string()});
  EXPECT_EQ(again.status, 2) << again.output;
  EXPECT_NE(again.output.find("pass --resume"), std::string::npos) << again.output;
}

TEST(TrainCli, ResumeContinuesBitwise) {
  auto dir = testing::scratch_dir("cli_resume");
  testing::write_text(dir / "t.toml", testing::tiny_config_toml(testing::tiny_corpus_dir().string()) +
                                          "\n");
  auto train = [&](const std::string& run, int steps, bool resume) {
    std::vector<std::string> args = {"train", "--config", (dir / "t.toml").string(), "--run-dir",
                                     (dir / run).string(), "--set", "train.steps=" + std::to_string(steps),
                                     "--set", "optim.decay_steps=10"};
    if (resume) args.push_back("--resume");
    return testing::run_longhaul(args);
  };
  ASSERT_EQ(train("straight", 10, false).status, 0);
  ASSERT_EQ(train("split", 4, false).status, 0);
  auto res = train("split", 10, true);
  ASSERT_EQ(res.status, 0) << res.output;
  EXPECT_NE(res.output.find("resumed from"), std::string::npos) << res.output;
  auto losses = [&](const std::string& run) {
    std::vector<std::string> out;  // the JSON text of each loss: bitwise equality of doubles
    for (auto& j : read_jsonl(dir / run / "metrics.jsonl"))
      if (j["event"] == "step") out.push_back(j["step"].dump() + ":" + j["loss"].dump());
    return out;
  };
  auto a = losses("straight"), b = losses("split");
  ASSERT_EQ(a.size(), 10u);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace longhaul::inner
