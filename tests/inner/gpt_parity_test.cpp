// Parity with PyTorch itself: the C++ side writes its model, batches and results as safetensors,
// then runs tests/python/gpt_parity_oracle.py with the venv's python (torch 2.11, the version
// of the linked LibTorch), which loads them into nanoGPT's GPT and checks (exit status 0).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "tiny_gpt_config.h"
#include "inner/inner_optimizer.h"
#include "inner/lr_schedule.h"
#include "inner/safetensors_io.h"

using namespace longhaul::inner;
namespace fs = std::filesystem;

namespace {

GptConfig tiny() { return longhaul::test::tiny_gpt_config(); }

class GptParity : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::set_num_threads(1);
    dir_ = fs::path(LONGHAUL_BUILD_DIR) / "test_scratch" /
           ("gpt_parity_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  // Runs the oracle; returns its exit status, printing its output.
  int run_oracle(const std::string& mode) {
    const std::string cmd = std::string(LONGHAUL_PYTHON) + " " + LONGHAUL_SOURCE_DIR +
                            "/tests/python/gpt_parity_oracle.py " + mode + " --dir '" +
                            dir_.string() + "' 2>&1";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (!pipe) return -1;
    std::string out;
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
    const int status = ::pclose(pipe);
    std::printf("$ %s\n%s", cmd.c_str(), out.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // Moves every parameter off its init value (LayerNorm 1/0, zero biases) so a swapped
  // weight/bias or a skipped bias cannot hide behind the initialisation.
  static void perturb(Gpt& m) {
    torch::NoGradGuard ng;
    for (auto& p : m->parameters()) p.add_(torch::randn_like(p) * 0.05);
  }

  fs::path dir_;
};

}  // namespace

TEST_F(GptParity, LogitsMatchNanoGptInPyTorch) {
  torch::manual_seed(1234);
  Gpt m(tiny());
  perturb(m);
  m->eval();
  auto idx = torch::randint(0, 64, {3, 16}, torch::kLong);
  auto targets = torch::randint(0, 64, {3, 16}, torch::kLong);
  targets.index_put_({0, 3}, -1);  // nanoGPT's ignore_index
  torch::Tensor logits, loss;
  {
    torch::NoGradGuard ng;
    logits = m->forward(idx);
    loss = m->loss(idx, targets);
  }
  export_model(m, dir_ / "model");
  save_safetensors(
      dir_ / "batch.safetensors",
      {{"idx", idx}, {"targets", targets}, {"logits", logits}, {"loss", loss.reshape({1})}});
  ASSERT_EQ(run_oracle("logits"), 0);

  // Our reader on a file from the official safetensors writer (its own layout and alignment).
  const auto theirs = load_safetensors(dir_ / "torch_logits.safetensors");
  ASSERT_EQ(theirs.size(), 3u);
  for (const auto& [name, t] : theirs) {
    if (name == "logits")
      EXPECT_LE((t - logits).abs().max().item<float>(), 1e-5f);
    else if (name == "loss")
      EXPECT_NEAR(t.item<float>(), loss.item<float>(), 1e-5);
    else
      EXPECT_TRUE(name == "idx" && torch::equal(t, idx)) << name;
  }
  EXPECT_EQ(load_safetensors_metadata(dir_ / "torch_logits.safetensors")["writer"],
            "safetensors.torch");
}

TEST_F(GptParity, AdamWWithScheduleAndClippingMatchesTorchOptim) {
  constexpr int kSteps = 20, kBatch = 4, kT = 16;
  torch::manual_seed(99);
  Gpt m(tiny());
  export_model(m, dir_ / "init");

  // A learnable stream (next = 5·prev + 3 mod 64, with a random restart every 37 tokens) and
  // random windows of it, so the loss really falls.
  auto stream = torch::empty({4096}, torch::kLong);
  auto s = stream.accessor<int64_t, 1>();
  auto starts = torch::randint(0, 64, {4096 / 37 + 1}, torch::kLong);
  for (int i = 0; i < 4096; ++i)
    s[i] = i % 37 == 0 ? starts[i / 37].item<int64_t>() : (5 * s[i - 1] + 3) % 64;
  auto offsets = torch::randint(0, 4096 - kT - 1, {kSteps, kBatch}, torch::kLong);
  auto idx = torch::empty({kSteps, kBatch, kT}, torch::kLong), targets = torch::empty_like(idx);
  using torch::indexing::Slice;
  for (int i = 0; i < kSteps; ++i)
    for (int b = 0; b < kBatch; ++b) {
      const int64_t o = offsets[i][b].item<int64_t>();
      idx[i][b] = stream.index({Slice(o, o + kT)});
      targets[i][b] = stream.index({Slice(o + 1, o + kT + 1)});
    }
  save_safetensors(dir_ / "batches.safetensors", {{"idx", idx}, {"targets", targets}});

  InnerOptimConfig c;
  c.lr = 1e-2;  // large enough that 20 steps move every weight visibly
  c.min_lr = 1e-3;
  c.warmup_steps = 5;  // steps 0-4 warmup, 5-15 cosine, 16-19 at min_lr
  c.decay_steps = 15;
  c.grad_clip =
      1.5;  // inside the range of this run's gradient norms (1.1-2.4): clips some steps, not all
  std::ofstream(dir_ / "optim.json") << nlohmann::json{
      {"lr", c.lr},
      {"min_lr", c.min_lr},
      {"beta1", c.beta1},
      {"beta2", c.beta2},
      {"eps", c.eps},
      {"weight_decay", c.weight_decay},
      {"warmup_steps", c.warmup_steps},
      {"decay_steps", c.decay_steps},
      {"grad_clip", c.grad_clip},
      {"steps", kSteps}}.dump();

  m->train();
  auto opt = make_inner_optimizer(m, c);
  auto lrs = torch::empty({kSteps}, torch::kFloat64), losses = torch::empty_like(lrs),
       norms = torch::empty_like(lrs);
  int clipped = 0;
  for (int step = 0; step < kSteps; ++step) {  // batch, forward, backward, clip, step
    const double lr = lr_at(step, c);
    set_lr(*opt, lr);
    auto loss = m->loss(idx[step], targets[step]);
    loss.backward();
    const double norm = clip_grad_norm(*m, c.grad_clip);
    opt->step();
    opt->zero_grad();
    lrs[step] = lr;
    losses[step] = loss.item<double>();
    norms[step] = norm;
    clipped += norm > c.grad_clip;
  }
  save_safetensors(dir_ / "cpp_trace.safetensors",
                   {{"lrs", lrs}, {"losses", losses}, {"norms", norms}});
  export_model(m, dir_ / "final");

  // The run exercises what it claims to: learning happened, clipping both fired and did not.
  EXPECT_LT(losses[kSteps - 1].item<double>(), losses[0].item<double>() - 0.5);
  EXPECT_GT(clipped, 0);
  EXPECT_LT(clipped, kSteps);
  EXPECT_EQ(run_oracle("adamw"), 0);
}
