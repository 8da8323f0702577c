// Reading [model], [data], [optim], [train]: defaults, overrides, and errors that name the
// file, the key, the value and what was expected.
#include "inner/train_config.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "inner/device.h"
#include "inner/trainer_test_util.h"

namespace longhaul::inner {
namespace {

TrainConfig parse(const std::string& text, const std::vector<std::string>& sets = {}) {
  auto r = ConfigReader::from_string(text, "cfg.toml", sets);
  return read_train_config(r);
}

std::string config_error(const std::string& text, const std::vector<std::string>& sets = {}) {
  try {
    parse(text, sets);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

const std::string kMinimal = "[data]\npath = \"/some/corpus\"\n";

TEST(TrainConfig, DefaultsAreDocumentedValues) {
  TrainConfig c = parse(kMinimal);
  EXPECT_EQ(c.model.n_layer, 4);
  EXPECT_EQ(c.model.block_size, 128);
  EXPECT_EQ(c.data.path, "/some/corpus");
  EXPECT_EQ(c.data.block_size, 128);
  EXPECT_DOUBLE_EQ(c.data.val_fraction, 0.1);
  EXPECT_DOUBLE_EQ(c.optim.lr, 6e-4);
  EXPECT_EQ(c.optim.warmup_steps, 100);      // min(100, steps / 10)
  EXPECT_EQ(c.optim.decay_steps, 2000);      // = train.steps
  EXPECT_EQ(c.train.steps, 2000);
  EXPECT_EQ(c.train.device, "cpu");
  EXPECT_EQ(c.train.tokens_per_step(c.model.block_size), 16 * 128);
  EXPECT_EQ(c.train.process_group_backend, "auto");
  EXPECT_EQ(c.train.device_names(), std::vector<std::string>{"cpu"});
}

TEST(TrainConfig, SetOverridesApplyWithTheSameChecks) {
  TrainConfig c = parse(kMinimal, {"train.steps=50", "model.n_embd=64", "train.device=cpu"});
  EXPECT_EQ(c.train.steps, 50);
  EXPECT_EQ(c.optim.warmup_steps, 5);
  EXPECT_EQ(c.optim.decay_steps, 50);
  EXPECT_EQ(c.model.n_embd, 64);
  auto msg = config_error(kMinimal, {"train.steps=0"});
  EXPECT_NE(msg.find("cfg.toml: key 'train.steps' = 0: expected an integer in [1,"), std::string::npos) << msg;
}

TEST(TrainConfig, RelativeDataPathIsRelativeToTheConfigFile) {
  auto dir = testing::scratch_dir("cfg_rel");
  testing::write_text(dir / "t.toml", "[data]\npath = \"corpus.txt\"\n");
  auto r = ConfigReader::from_file(dir / "t.toml");
  EXPECT_EQ(read_train_config(r).data.path, (dir / "corpus.txt").string());
}

TEST(TrainConfig, ErrorsNameFileKeyValueAndExpectation) {
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {kMinimal + "[train]\nstepz = 3\n", "cfg.toml: unknown key 'train.stepz'"},
      {kMinimal + "[model]\nn_layer = \"four\"\n", "key 'model.n_layer' = \"four\": expected an integer"},
      {kMinimal + "[optim]\nlr = -1.0\n", "key 'optim.lr' = -1.0: expected a number in (0, 10]"},
      {kMinimal + "[model]\nn_embd = 30\nn_head = 4\n", "key 'model.n_embd' = 30: expected a multiple of model.n_head = 4"},
      {kMinimal + "[data]\nformat = \"parquet\"\n", "cfg.toml:3:1: TOML syntax error"},  // [data] twice
      {"[data]\npath = \"x\"\nformat = \"parquet\"\n", "key 'data.format' = \"parquet\": expected one of"},
      {"[model]\nn_layer = 2\n", "key 'data.path': expected the corpus"},
      {kMinimal + "[optim]\nmin_lr = 1.0\n", "key 'optim.min_lr' = 1.0: expected a number in [0, optim.lr]"},
      {kMinimal + "[optim]\nwarmup_steps = 500\ndecay_steps = 400\n", "key 'optim.decay_steps' = 400: expected an integer > optim.warmup_steps = 500"},
      {"[data]\npath = \"x\"\nnum_shards = 2\nshard_index = 2\n", "key 'data.shard_index' = 2: expected an integer in [0, data.num_shards = 2)"},
      {kMinimal + "[train]\ndevice = \"tpu\"\n", "key 'train.device' = \"tpu\""},
      {kMinimal + "[train]\nbf16_autocast = 1\n", "key 'train.bf16_autocast' = 1: expected true or false"},
      {kMinimal + "[train]\nprocess_group_backend = \"mpi\"\n",
       "key 'train.process_group_backend' = \"mpi\": expected one of \"auto\", \"gloo\", \"nccl\""},
  };
  for (const auto& c : cases) {
    auto msg = config_error(c.text);
    EXPECT_NE(msg, "(no ConfigError)") << c.text;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "got: " << msg << "\nfor:\n" << c.text;
  }
}

TEST(TrainConfig, CudaWithoutAGpuIsAConfigError) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present";
  auto msg = config_error(kMinimal + "[train]\ndevice = \"cuda\"\n");
  EXPECT_NE(msg.find("cfg.toml: key 'train.device' = \"cuda\""), std::string::npos) << msg;
}

}  // namespace
}  // namespace longhaul::inner
