// The per-fragment outer optimizer (outer/fragment_outer.h): fragment p's step is exactly an
// OuterOptimizer step (torch.optim.SGD semantics, outer_optimizer_test.cpp) over its slice, and
// touches no other fragment's parameters or momentum; P = 1 is the plain OuterOptimizer.
#include "outer/fragment_outer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace longhaul::outer {
namespace {

transport::Manifest three_block_manifest() {
  transport::Manifest m;
  m.add("transformer.wte.weight", {8, 4});
  for (int b = 0; b < 3; ++b) {
    const std::string h = "transformer.h." + std::to_string(b) + ".";
    m.add(h + "attn.weight", {4, 4});
    m.add(h + "mlp.weight", {6});
  }
  m.add("transformer.ln_f.weight", {4});
  return m;
}

std::vector<float> random_vector(std::size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

std::vector<float> to_vec(std::span<const float> s) { return {s.begin(), s.end()}; }

TEST(FragmentOuter, EachFragmentStepsExactlyLikeAnOuterOptimizerOnItsSlice) {
  const transport::Manifest m = three_block_manifest();
  const FragmentLayout l = FragmentLayout::strided(m, 3);
  const std::vector<float> theta0 = random_vector(m.total_elements(), 1);
  OuterOptimConfig cfg{OuterKind::kNesterov, 0.7, 0.9, 3, 0.0};
  FragmentOuter fo(cfg, l, theta0);
  std::vector<std::unique_ptr<OuterOptimizer>> ref;
  for (int p = 0; p < 3; ++p) ref.push_back(std::make_unique<OuterOptimizer>(cfg, l.gather(p, theta0)));
  // Rounds in the protocol's order: fragments 1, 2, 0, 1, 2, 0, ...
  for (int r = 0; r < 9; ++r) {
    const int p = (r + 1) % 3;
    const std::vector<float> before = to_vec(fo.params());
    const std::vector<float> d = random_vector(l.fragment(p).numel, 100 + r, 0.1f);
    EXPECT_DOUBLE_EQ(fo.next_lr(p), ref[p]->next_lr());
    fo.step(p, d);
    ref[p]->step(d);
    EXPECT_EQ(to_vec(fo.params(p)), to_vec(ref[p]->params())) << "round " << r;
    EXPECT_EQ(l.gather(p, fo.params()), to_vec(ref[p]->params())) << "θ master holds the slice";
    for (int q = 0; q < 3; ++q)
      if (q != p) EXPECT_EQ(l.gather(q, fo.params()), l.gather(q, before)) << "fragment " << q << " moved";
  }
  EXPECT_EQ(fo.steps_taken(), (std::vector<int64_t>{3, 3, 3}));
  // Momentum: each fragment's own, assembled into θ's layout.
  const std::vector<float> mom = to_vec(fo.momentum_view());
  ASSERT_EQ(mom.size(), m.total_elements());
  for (int p = 0; p < 3; ++p) EXPECT_EQ(l.gather(p, mom), to_vec(ref[p]->momentum_view()));
}

TEST(FragmentOuter, MomentumOfAFragmentWithoutStepsIsAbsentAndRestoreRoundTrips) {
  const transport::Manifest m = three_block_manifest();
  const FragmentLayout l = FragmentLayout::strided(m, 3);
  const std::vector<float> theta0 = random_vector(m.total_elements(), 2);
  OuterOptimConfig cfg{OuterKind::kNesterov, 0.7, 0.9, 0, 0.0};
  FragmentOuter a(cfg, l, theta0);
  EXPECT_TRUE(a.momentum_view().empty());
  a.step(1, random_vector(l.fragment(1).numel, 7, 0.1f));
  a.step(2, random_vector(l.fragment(2).numel, 8, 0.1f));
  const std::vector<float> mom = to_vec(a.momentum_view());
  for (float x : l.gather(0, mom)) EXPECT_EQ(x, 0.f);  // fragment 0 has taken no step
  // A restored copy continues bitwise like the original (a coordinator restart).
  FragmentOuter b(cfg, l, theta0);
  b.restore(a.params(), mom, a.steps_taken());
  EXPECT_EQ(b.steps_taken(), (std::vector<int64_t>{0, 1, 1}));
  // The coordinator's resume: built from the checkpoint's θ, then only momentum and steps.
  FragmentOuter c(cfg, l, to_vec(a.params()));
  c.restore({}, mom, a.steps_taken());
  for (int r = 0; r < 4; ++r) {
    const int p = r % 3;
    const auto d = random_vector(l.fragment(p).numel, 50 + r, 0.1f);
    a.step(p, d);
    b.step(p, d);
    c.step(p, d);
  }
  EXPECT_EQ(to_vec(a.params()), to_vec(b.params()));
  EXPECT_EQ(to_vec(a.momentum_view()), to_vec(b.momentum_view()));
  EXPECT_EQ(to_vec(a.params()), to_vec(c.params()));
  EXPECT_EQ(to_vec(a.momentum_view()), to_vec(c.momentum_view()));
}

TEST(FragmentOuter, OneFragmentIsThePlainOuterOptimizer) {
  const transport::Manifest m = three_block_manifest();
  const FragmentLayout l = FragmentLayout::strided(m, 1);
  const std::vector<float> theta0 = random_vector(m.total_elements(), 3);
  OuterOptimConfig cfg{OuterKind::kNesterov, 0.7, 0.9, 2, 0.5};
  FragmentOuter fo(cfg, l, theta0);
  OuterOptimizer ref(cfg, theta0);
  for (int r = 0; r < 5; ++r) {
    const auto d = random_vector(m.total_elements(), 200 + r, 0.3f);
    fo.step(0, d);
    ref.step(d);
    EXPECT_EQ(to_vec(fo.params()), to_vec(ref.params()));
    EXPECT_EQ(fo.last_clipped_norm(0), ref.last_clipped_norm());
  }
  EXPECT_EQ(to_vec(fo.momentum_view()), to_vec(ref.momentum_view()));
}

TEST(FragmentOuter, ClipScalesWithTheFragmentsShareOfTheElements) {
  const transport::Manifest m = three_block_manifest();
  const FragmentLayout l = FragmentLayout::strided(m, 3);
  const std::vector<float> theta0(m.total_elements(), 0.f);
  const double c = 0.5;
  FragmentOuter fo({OuterKind::kNesterov, 0.7, 0.9, 0, c}, l, theta0);
  for (int p = 0; p < 3; ++p) {
    fo.step(p, std::vector<float>(l.fragment(p).numel, 1.f));  // ‖Δ̄_p‖ = sqrt(N_p), far above the cap
    const double want = c * std::sqrt(static_cast<double>(l.fragment(p).numel) / m.total_elements());
    EXPECT_NEAR(fo.last_clipped_norm(p), want, 1e-5) << "fragment " << p;
    EXPECT_NEAR(fo.last_delta_norm(p), std::sqrt(static_cast<double>(l.fragment(p).numel)), 1e-4);
  }
}

}  // namespace
}  // namespace longhaul::outer
