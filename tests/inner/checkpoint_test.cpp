// Checkpoints: a round trip restores model, AdamW state, step, tokens and data cursor; the
// file is versioned, atomically written, and damaged or foreign files are clear DataErrors.
#include "inner/checkpoint.h"

#include <gtest/gtest.h>
#include "test_support.h"

#include <fstream>

#include "common/atomic_file.h"
#include "common/error.h"
#include "inner/flat_params.h"
#include "inner/trainer.h"
#include "inner/trainer_test_util.h"

namespace longhaul::inner {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<const Corpus> tiny_corpus(const TrainConfig& cfg) {
  return std::make_shared<const Corpus>(load_corpus(cfg.data));
}

template <typename F>
std::string data_error(F&& f) {
  return test_support::error_text<DataError>(f);
}

TEST(Checkpoint, RoundTripRestoresEverything) {
  auto dir = testing::scratch_dir("ckpt_roundtrip");
  auto cfg = testing::tiny_config(testing::tiny_corpus_dir().string());
  auto corpus = tiny_corpus(cfg);
  Trainer a(cfg, corpus);
  a.train_steps(3);
  a.save_checkpoint(checkpoint_path(dir, 3), {{"round", 17}});
  for (const auto& e : fs::directory_iterator(dir / "checkpoints"))
    EXPECT_EQ(e.path().filename(), "step-00000003.ckpt");  // no temp file left behind

  Trainer b(cfg, corpus);
  // b holds the fresh init, a has trained 3 steps: only the load can make them equal.
  EXPECT_NE(params_hash(*b.model()), params_hash(*a.model()));
  CheckpointMeta m = b.load_checkpoint(checkpoint_path(dir, 3));
  EXPECT_EQ(m.step, 3);
  EXPECT_EQ(m.extra.at("round"), 17);
  EXPECT_EQ(b.steps_done(), 3);
  EXPECT_EQ(b.tokens_trained(), 3 * a.tokens_per_step());
  EXPECT_EQ(params_hash(*b.model()), params_hash(*a.model()));
  // AdamW state: every parameter's step count and moments.
  auto& sa = a.optimizer().state();
  auto& sb = b.optimizer().state();
  ASSERT_EQ(sa.size(), sb.size());
  ASSERT_FALSE(sa.empty());
  const auto pa = a.model()->parameters(), pb = b.model()->parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    auto& xa = static_cast<torch::optim::AdamWParamState&>(*sa.at(pa[i].unsafeGetTensorImpl()));
    auto& xb = static_cast<torch::optim::AdamWParamState&>(*sb.at(pb[i].unsafeGetTensorImpl()));
    EXPECT_EQ(xa.step(), xb.step());
    EXPECT_TRUE(torch::equal(xa.exp_avg(), xb.exp_avg()));
    EXPECT_TRUE(torch::equal(xa.exp_avg_sq(), xb.exp_avg_sq()));
  }
  // The next step is identical, so the data cursor came back too.
  EXPECT_EQ(a.step().loss, b.step().loss);
}

// A caller's own tensors (the site's residual and pending upload) live in the same file: they
// come back bitwise; a name the file lacks comes back undefined.
TEST(Checkpoint, BlobsTravelInTheSameFile) {
  auto dir = testing::scratch_dir("ckpt_blobs");
  auto cfg = testing::tiny_config(testing::tiny_corpus_dir().string());
  auto corpus = tiny_corpus(cfg);
  Trainer a(cfg, corpus);
  a.train_steps(1);
  const torch::Tensor residual = torch::randn({1000});
  const torch::Tensor bytes = torch::randint(0, 256, {777}, torch::kUInt8);
  a.save_checkpoint(checkpoint_path(dir, 1), {{"round", 2}}, {{"residual", residual}, {"pending_upload", bytes}});
  Trainer b(cfg, corpus);
  CheckpointBlobs blobs = {{"residual", {}}, {"pending_upload", {}}, {"absent", torch::ones({3})}};
  b.load_checkpoint(checkpoint_path(dir, 1), &blobs);
  ASSERT_TRUE(blobs["residual"].defined());
  EXPECT_TRUE(torch::equal(blobs["residual"], residual));
  ASSERT_TRUE(blobs["pending_upload"].defined());
  EXPECT_EQ(blobs["pending_upload"].scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(blobs["pending_upload"], bytes));
  EXPECT_FALSE(blobs["absent"].defined()) << "a blob the file does not hold comes back undefined";
  // A checkpoint without blobs still loads, and asking for them finds none.
  a.save_checkpoint(checkpoint_path(dir, 2), {{"round", 3}});
  CheckpointBlobs none = {{"residual", {}}};
  b.load_checkpoint(checkpoint_path(dir, 2), &none);
  EXPECT_FALSE(none["residual"].defined());
  EXPECT_EQ(params_hash(*b.model()), params_hash(*a.model()));
}

TEST(Checkpoint, DamagedOrForeignFilesAreDataErrors) {
  auto dir = testing::scratch_dir("ckpt_damaged");
  auto cfg = testing::tiny_config(testing::tiny_corpus_dir().string());
  auto corpus = tiny_corpus(cfg);
  Trainer t(cfg, corpus);
  t.train_steps(1);
  const fs::path good = dir / "good.ckpt";
  t.save_checkpoint(good);
  const std::string bytes = read_file(good);

  auto write = [&](const std::string& name, std::string b) {
    std::ofstream(dir / name, std::ios::binary) << b;
    return dir / name;
  };
  std::string bad_magic = bytes;
  bad_magic[0] = 'X';
  EXPECT_NE(data_error([&] { t.load_checkpoint(write("m.ckpt", bad_magic)); }).find("bad magic"),
            std::string::npos);
  std::string bad_version = bytes;
  bad_version[8] = 99;
  EXPECT_NE(data_error([&] { t.load_checkpoint(write("v.ckpt", bad_version)); }).find("format version 99"),
            std::string::npos);
  auto msg = data_error([&] { t.load_checkpoint(write("t.ckpt", bytes.substr(0, bytes.size() - 10))); });
  EXPECT_NE(msg.find("t.ckpt: checkpoint is truncated or damaged"), std::string::npos) << msg;
  std::string flipped = bytes;
  flipped[bytes.size() - 100] ^= 0x5a;  // inside the payload
  msg = data_error([&] { t.load_checkpoint(write("p.ckpt", flipped)); });
  EXPECT_NE(msg.find("p.ckpt: checkpoint payload checksum mismatch"), std::string::npos) << msg;

  auto other = cfg;
  other.model.n_embd = 32;
  other.data.block_size = other.model.block_size;
  Trainer o(other, corpus);
  msg = data_error([&] { o.load_checkpoint(good); });
  EXPECT_NE(msg.find("checkpoint was written for model"), std::string::npos) << msg;
}

TEST(Checkpoint, LatestAndPrune) {
  auto dir = testing::scratch_dir("ckpt_latest");
  EXPECT_FALSE(latest_checkpoint(dir).has_value());
  auto cfg = testing::tiny_config(testing::tiny_corpus_dir().string());
  Trainer t(cfg, tiny_corpus(cfg));
  for (int s : {2, 10, 4}) t.save_checkpoint(checkpoint_path(dir, s));
  testing::write_text(dir / "checkpoints" / "notes.txt", "ignored");
  EXPECT_EQ(latest_checkpoint(dir)->filename(), "step-00000010.ckpt");
  prune_checkpoints(dir, 2);
  EXPECT_FALSE(fs::exists(checkpoint_path(dir, 2)));
  EXPECT_TRUE(fs::exists(checkpoint_path(dir, 4)));
  EXPECT_TRUE(fs::exists(checkpoint_path(dir, 10)));
  EXPECT_EQ(read_checkpoint_meta(checkpoint_path(dir, 10)).model, cfg.model);
}

}  // namespace
}  // namespace longhaul::inner
