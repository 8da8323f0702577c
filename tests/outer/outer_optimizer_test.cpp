// The outer step against torch.optim.SGD (golden values produced by the venv's PyTorch at test
// time by tests/python/gen_outer_golden.py), and the sign convention on a known quadratic.
#include <gtest/gtest.h>

#include <cstring>

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "outer/outer_optimizer.h"
#include "outer/test_dirs.h"

namespace longhaul::outer {
namespace {

namespace fs = std::filesystem;

std::vector<float> read_floats(std::ifstream& f, int n) {
  std::vector<float> v(n);
  f.read(reinterpret_cast<char*>(v.data()), n * sizeof(float));
  EXPECT_TRUE(f.good());
  return v;
}

TEST(OuterOptimizer, MatchesTorchSgdOver20Rounds) {
  fs::path dir = fs::temp_directory_path() / ("lh_outer_golden_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path out = dir / "golden.bin";
  std::string cmd = std::string(LONGHAUL_PYTHON) + " " + LONGHAUL_SOURCE_DIR +
                    "/tests/python/gen_outer_golden.py " + out.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out, std::ios::binary);
  int32_t hdr[3];
  f.read(reinterpret_cast<char*>(hdr), sizeof(hdr));
  const int numel = hdr[0], rounds = hdr[1], cases = hdr[2];
  ASSERT_EQ(rounds, 20);
  ASSERT_EQ(cases, 6);
  // The same cases as gen_outer_golden.py's CASES: {kind, lr, μ, warmup_rounds, max_update_norm}.
  const OuterOptimConfig cfgs[6] = {{OuterKind::kNesterov, 0.7, 0.9, 0, 0.0},
                                    {OuterKind::kSgdm, 0.5, 0.8, 0, 0.0},
                                    {OuterKind::kAvg, 1.0, 0.0, 0, 0.0},
                                    {OuterKind::kNesterov, 0.7, 0.9, 5, 0.0},
                                    {OuterKind::kNesterov, 0.7, 0.9, 0, 1.0},
                                    {OuterKind::kSgdm, 0.5, 0.8, 3, 1.2}};
  for (int c = 0; c < cases; ++c) {
    auto theta0 = read_floats(f, numel);
    OuterOptimizer opt(cfgs[c], theta0);
    double worst = 0;
    for (int r = 0; r < rounds; ++r) {
      auto delta = read_floats(f, numel);
      auto expect = read_floats(f, numel);
      opt.step(delta);
      auto got = opt.params();
      for (int i = 0; i < numel; ++i) {
        double rel = std::abs(got[i] - expect[i]) / std::max(1e-6, std::abs((double)expect[i]));
        worst = std::max(worst, rel);
        ASSERT_LE(rel, 1e-6) << "case " << c << " round " << r << " element " << i << ": "
                             << got[i] << " vs torch " << expect[i];
      }
    }
    std::printf("case %s warmup %lld clip %.1f: worst relative error vs torch.optim.SGD over %d rounds: %.3g\n",
                to_string(cfgs[c].kind).c_str(), (long long)cfgs[c].warmup_rounds, cfgs[c].max_update_norm,
                rounds, worst);
  }
  testing::remove_tree(dir);
}

// f(θ) = ½ Σ a_i (θ_i − c_i)². A site taking H plain gradient steps of size η from θ_r ends at
// θ_k; its pseudo-gradient Δ = θ_r − θ_k points uphill, so the outer step must bring θ to c.
TEST(OuterOptimizer, PseudoGradientOfQuadraticDrivesThetaToMinimum) {
  const int n = 16;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.5f, 2.0f), cdist(-3.f, 3.f);
  std::vector<float> a(n), c(n), theta(n, 0.f);
  for (int i = 0; i < n; ++i) a[i] = u(rng), c[i] = cdist(rng);
  for (OuterKind kind : {OuterKind::kNesterov, OuterKind::kSgdm, OuterKind::kAvg}) {
    OuterOptimizer opt({kind, kind == OuterKind::kAvg ? 1.0 : 0.7, 0.9}, theta);
    auto dist = [&] {
      double d = 0;
      for (int i = 0; i < n; ++i) d += std::pow(opt.params()[i] - c[i], 2);
      return std::sqrt(d);
    };
    const double d0 = dist();
    for (int r = 0; r < 200; ++r) {
      std::vector<float> local(opt.params().begin(), opt.params().end());
      for (int h = 0; h < 5; ++h)
        for (int i = 0; i < n; ++i) local[i] -= 0.05f * a[i] * (local[i] - c[i]);
      std::vector<float> delta(n);
      for (int i = 0; i < n; ++i) delta[i] = opt.params()[i] - local[i];
      opt.step(delta);
    }
    EXPECT_LT(dist(), 1e-2 * d0) << to_string(kind) << ": from " << d0 << " to " << dist();
  }
}

TEST(OuterOptimizer, WarmupRampsLinearlyAndClipBindsOnlyAboveTheCap) {
  const int n = 100;
  std::vector<float> theta(n, 0.f), big(n, 0.5f), small(n, 0.01f);  // ‖big‖ = 5, ‖small‖ = 0.1
  OuterOptimizer opt({OuterKind::kNesterov, 0.8, 0.9, 4, 1.0}, theta);
  const double want[] = {0.2, 0.4, 0.6, 0.8, 0.8, 0.8};
  for (int t = 0; t < 6; ++t) {
    EXPECT_NEAR(opt.next_lr(), want[t], 1e-12) << t;
    opt.step(t % 2 ? small : big);
    if (t % 2) {
      EXPECT_NEAR(opt.last_delta_norm(), 0.1, 1e-6);
      EXPECT_EQ(opt.last_clipped_norm(), opt.last_delta_norm());  // under the cap: untouched
    } else {
      EXPECT_NEAR(opt.last_delta_norm(), 5.0, 1e-5);
      EXPECT_NEAR(opt.last_clipped_norm(), 1.0, 1e-5);
    }
  }
  // First step: buf = Δ̄_clipped, θ = −lr·(Δ̄ + μ·buf) = −0.2·1.9·(0.5/5) per element.
  OuterOptimizer one({OuterKind::kNesterov, 0.8, 0.9, 4, 1.0}, theta);
  one.step(big);
  EXPECT_NEAR(one.params()[0], -0.2 * 1.9 * 0.1, 1e-6);
  // avg ignores both: θ becomes θ − Δ̄ exactly.
  OuterOptimizer avg({OuterKind::kAvg, 1.0, 0.0, 4, 1.0}, theta);
  avg.step(big);
  EXPECT_EQ(avg.params()[0], -0.5f);
}

// outer.max_update_theta_ratio ρ is the torch-exact clip of max_update_norm with c = ρ·‖θ‖
// (θ before each step): bitwise the same trajectory as an absolute clip recomputed each round;
// with both set the smaller cap binds.
TEST(OuterOptimizer, ThetaRatioClipIsTheNormClipAtRhoTimesThetaNorm) {
  const int n = 257;
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> theta(n);
  for (auto& v : theta) v = g(rng);
  const double rho = 0.05;
  OuterOptimizer rel({OuterKind::kNesterov, 0.7, 0.9, 0, 0.0, rho}, theta);
  int bound = 0;
  for (int r = 0; r < 12; ++r) {
    std::vector<float> delta(n);
    const float scale = r < 4 ? 0.5f : 0.002f;  // large early pseudo-gradients, then small ones
    for (auto& v : delta) v = scale * g(rng);
    // The same step by an absolute clip at ρ·‖θ‖ (fp32 norm), from rel's state before it.
    const std::vector<float> p(rel.params().begin(), rel.params().end());
    const std::vector<float> mom(rel.momentum_view().begin(), rel.momentum_view().end());
    const double cap = rho * torch::from_blob(const_cast<float*>(p.data()), {n}).norm().item<float>();
    OuterOptimizer abs_clip({OuterKind::kNesterov, 0.7, 0.9, 0, cap}, p);
    abs_clip.restore(p, mom, rel.steps_taken());
    rel.step(delta);
    abs_clip.step(delta);
    EXPECT_EQ(rel.last_cap(), cap) << "round " << r;
    ASSERT_EQ(std::memcmp(rel.params().data(), abs_clip.params().data(), n * sizeof(float)), 0) << "round " << r;
    bound += rel.last_clipped_norm() < rel.last_delta_norm();
  }
  EXPECT_EQ(bound, 4) << "the 4 large early pseudo-gradients are clipped, the small later ones not";
  // Both set: the smaller cap binds.
  OuterOptimizer both({OuterKind::kNesterov, 0.7, 0.9, 0, 0.01, rho}, theta);
  both.step(std::vector<float>(n, 1.f));
  EXPECT_EQ(both.last_cap(), 0.01);
  EXPECT_NEAR(both.last_clipped_norm(), 0.01, 1e-6);
}

TEST(OuterOptimizer, RestoreContinuesTheWarmupWhereItStopped) {
  const int n = 8;
  std::vector<float> theta(n, 1.f), d(n, 0.1f);
  OuterOptimConfig cfg{OuterKind::kNesterov, 0.7, 0.9, 10, 0.0};
  OuterOptimizer a(cfg, theta);
  for (int r = 0; r < 3; ++r) a.step(d);
  OuterOptimizer b(cfg, theta);
  b.restore(a.params(), a.momentum_buffer(), a.steps_taken());
  EXPECT_DOUBLE_EQ(b.next_lr(), 0.7 * 4 / 10);
  for (int r = 0; r < 3; ++r) a.step(d), b.step(d);
  for (int i = 0; i < n; ++i) ASSERT_EQ(a.params()[i], b.params()[i]) << i;
}

TEST(OuterOptimizer, RestoreContinuesBitwiseLikeAnUninterruptedRun) {
  const int n = 33;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> theta(n);
  for (auto& v : theta) v = nd(rng);
  std::vector<std::vector<float>> deltas(6, std::vector<float>(n));
  for (auto& d : deltas)
    for (auto& v : d) v = nd(rng);
  OuterOptimizer a({}, theta);
  for (int r = 0; r < 3; ++r) a.step(deltas[r]);
  std::vector<float> p(a.params().begin(), a.params().end());
  OuterOptimizer b({}, theta);
  b.restore(p, a.momentum_buffer(), a.steps_taken());
  for (int r = 3; r < 6; ++r) a.step(deltas[r]), b.step(deltas[r]);
  for (int i = 0; i < n; ++i) ASSERT_EQ(a.params()[i], b.params()[i]) << i;
  EXPECT_EQ(b.steps_taken(), 6);
}

}  // namespace
}  // namespace longhaul::outer
