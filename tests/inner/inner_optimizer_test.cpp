// Inner optimizer: nanoGPT's lr schedule (hand-computed values), config validation, the two
// AdamW parameter groups, set_lr, gradient clipping. The numerics against torch.optim.AdamW are
// in gpt_parity_test.cpp.
#include "tiny_gpt_config.h"
#include "inner/inner_optimizer.h"

#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "inner/lr_schedule.h"

using namespace longhaul;
using namespace longhaul::inner;

namespace {
GptConfig tiny() { return longhaul::test::tiny_gpt_config(); }

}  // namespace

TEST(InnerOptimizer, LrScheduleIsNanoGpts) {
  InnerOptimConfig c;
  c.lr = 1.0;
  c.min_lr = 0.1;
  c.warmup_steps = 10;
  c.decay_steps = 110;
  EXPECT_DOUBLE_EQ(lr_at(0, c), 1.0 / 11.0);  // (step + 1) / (warmup + 1)
  EXPECT_DOUBLE_EQ(lr_at(4, c), 5.0 / 11.0);
  EXPECT_DOUBLE_EQ(lr_at(9, c), 10.0 / 11.0);
  EXPECT_DOUBLE_EQ(lr_at(10, c), 1.0);  // cosine starts at lr
  EXPECT_DOUBLE_EQ(lr_at(35, c), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 4)));  // quarter way
  EXPECT_NEAR(lr_at(60, c), 0.55, 1e-15);                                      // half way
  EXPECT_NEAR(lr_at(110, c), 0.1, 1e-15);                                      // reaches min_lr
  EXPECT_EQ(lr_at(111, c), 0.1);
  EXPECT_EQ(lr_at(1000000, c), 0.1);
  for (int64_t s = 10; s < 110; ++s) EXPECT_GT(lr_at(s, c), lr_at(s + 1, c)) << s;
  c.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(lr_at(0, c), 1.0);
  EXPECT_THROW(lr_at(-1, c), InvariantError);
}

TEST(InnerOptimizer, ConfigValidationNamesTheField) {
  auto msg = [](auto mutate) {
    InnerOptimConfig c;
    mutate(c);
    try {
      c.validate();
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("<ok>");
  };
  EXPECT_EQ(msg([](InnerOptimConfig&) {}), "<ok>");
  EXPECT_NE(msg([](InnerOptimConfig& c) { c.lr = 0; }).find("lr = 0"), std::string::npos);
  EXPECT_NE(msg([](InnerOptimConfig& c) {
              c.min_lr = 1;
            }).find("min_lr = 1, expected a number in [0, lr]"),
            std::string::npos);
  EXPECT_NE(msg([](InnerOptimConfig& c) { c.beta2 = 1; }).find("beta2 = 1"), std::string::npos);
  EXPECT_NE(msg([](InnerOptimConfig& c) { c.eps = -1; }).find("eps = -1"), std::string::npos);
  EXPECT_NE(msg([](InnerOptimConfig& c) { c.weight_decay = NAN; }).find("weight_decay"),
            std::string::npos);
  EXPECT_NE(msg([](InnerOptimConfig& c) {
              c.decay_steps = 100;
            }).find("decay_steps = 100 must be > warmup_steps = 100"),
            std::string::npos);
  EXPECT_NE(msg([](InnerOptimConfig& c) { c.grad_clip = -1; }).find("grad_clip = -1"),
            std::string::npos);
}

TEST(InnerOptimizer, TwoGroupsDecayOnlyMatrices) {
  torch::set_num_threads(1);
  Gpt m(tiny());
  InnerOptimConfig c;
  c.weight_decay = 0.25;
  auto opt = make_inner_optimizer(m, c);
  ASSERT_EQ(opt->param_groups().size(), 2u);
  const auto& decay = opt->param_groups()[0];
  const auto& rest = opt->param_groups()[1];
  EXPECT_EQ(decay.params().size(),
            2u + 4u * 2);                       // wte, wpe; c_attn, c_proj, c_fc, c_proj per block
  EXPECT_EQ(rest.params().size(), 8u * 2 + 2);  // 2 LayerNorms x 2 + 4 biases per block; ln_f x 2
  for (const auto& p : decay.params()) EXPECT_GE(p.dim(), 2);
  for (const auto& p : rest.params()) EXPECT_LT(p.dim(), 2);
  auto opts = [](const torch::optim::OptimizerParamGroup& g) {
    return static_cast<const torch::optim::AdamWOptions&>(g.options());
  };
  EXPECT_EQ(opts(decay).weight_decay(), 0.25);
  EXPECT_EQ(opts(rest).weight_decay(), 0.0);
  EXPECT_EQ(std::get<0>(opts(decay).betas()), 0.9);
  EXPECT_EQ(std::get<1>(opts(rest).betas()), 0.95);
  EXPECT_EQ(opts(rest).eps(), 1e-8);
  set_lr(*opt, 0.125);
  EXPECT_EQ(opts(decay).lr(), 0.125);
  EXPECT_EQ(opts(rest).lr(), 0.125);
  c.decay_steps = 1;
  EXPECT_THROW(make_inner_optimizer(m, c), ConfigError);
}

TEST(InnerOptimizer, ClipGradNormScalesToMaxNorm) {
  torch::set_num_threads(1);
  torch::manual_seed(0);
  Gpt m(tiny());
  auto idx = torch::randint(0, 64, {2, 16}, torch::kLong);
  auto global_norm = [&] {
    double s = 0;
    for (const auto& p : m->parameters()) s += p.grad().pow(2).sum().item<double>();
    return std::sqrt(s);
  };
  m->loss(idx, idx).backward();
  const double before = global_norm();
  EXPECT_NEAR(clip_grad_norm(*m, 0.0), before, 1e-5 * before);  // disabled: reports, no change
  EXPECT_NEAR(global_norm(), before, 1e-6 * before);
  EXPECT_NEAR(clip_grad_norm(*m, 10 * before), before, 1e-5 * before);  // above the norm: no change
  EXPECT_NEAR(global_norm(), before, 1e-6 * before);
  EXPECT_NEAR(clip_grad_norm(*m, before / 4), before, 1e-5 * before);
  EXPECT_NEAR(global_norm(), before / 4, 1e-4 * before);
}
