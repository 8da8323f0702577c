// The aggregation of pseudo-gradients: the three modes against a NumPy golden computation
// (tests/python/gen_aggregation_golden.py, run at test time), the rejection rules, and the norm
// reference in both directions (an absolute reference from the first upload on; a reference
// that follows honest norms when they grow).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

#include "outer/aggregator.h"

namespace longhaul::outer {
namespace {

namespace fs = std::filesystem;

void put(Aggregator& a, const std::vector<float>& v) { std::copy(v.begin(), v.end(), a.scratch().begin()); }

AggregatorOptions opts(double max_norm_ratio, double max_update_ratio = 1e9) {
  AggregatorOptions o;
  o.max_norm_ratio = max_norm_ratio;
  o.max_update_ratio = max_update_ratio;
  return o;
}

TEST(Aggregator, TokenWeightedMean) {
  Aggregator a(3, opts(10.0));
  a.begin_round(0, 1);
  put(a, {1, 2, 3});
  EXPECT_FALSE(a.add_scratch(100));
  put(a, {3, 2, 1});
  EXPECT_FALSE(a.add_scratch(300));
  std::vector<float> mean(3);
  ASSERT_TRUE(a.finish(mean));
  EXPECT_FLOAT_EQ(mean[0], (100 * 1 + 300 * 3) / 400.f);
  EXPECT_FLOAT_EQ(mean[1], 2.f);
  EXPECT_FLOAT_EQ(mean[2], (100 * 3 + 300 * 1) / 400.f);
}

TEST(Aggregator, RejectsNonFiniteAndHugeNormWithoutTouchingTheSum) {
  Aggregator a(4, opts(10.0));
  a.begin_round(0, 1);
  put(a, {1, 1, 1, 1});
  ASSERT_FALSE(a.add_scratch(1));
  put(a, {1, std::numeric_limits<float>::quiet_NaN(), 1, 1});
  auto r = a.add_scratch(1);
  ASSERT_TRUE(r);
  EXPECT_NE(r->find("non-finite"), std::string::npos) << *r;
  put(a, {1, 1, std::numeric_limits<float>::infinity(), 1});
  EXPECT_TRUE(a.add_scratch(1));
  put(a, {1000, 0, 0, 0});
  r = a.add_scratch(1);
  ASSERT_TRUE(r);
  EXPECT_NE(r->find("median"), std::string::npos) << *r;
  put(a, {1, 1, 1, 1});
  EXPECT_TRUE(a.add_scratch(-5));
  EXPECT_EQ(a.accepted(), 1);
  std::vector<float> mean(4);
  ASSERT_TRUE(a.finish(mean));
  for (float v : mean) EXPECT_EQ(v, 1.f);
}

TEST(Aggregator, PreviousRoundNormsAreTheReferenceForTheFirstUpload) {
  Aggregator a(2, opts(5.0));
  a.begin_round(0, 1);
  put(a, {3, 4});  // norm 5
  ASSERT_FALSE(a.add_scratch(1));
  a.begin_round(0, 1);
  EXPECT_DOUBLE_EQ(a.reference_median(), 5.0);
  put(a, {30, 40});  // norm 50 > 5 x 5
  EXPECT_TRUE(a.add_scratch(1));
  std::vector<float> mean(2, -1);
  EXPECT_FALSE(a.finish(mean));  // nothing accepted: θ must stay
  EXPECT_EQ(mean[0], -1);
}

TEST(Aggregator, TheNormOfThetaIsAReferenceFromTheFirstUploadOn) {
  Aggregator a(2, opts(10.0, 2.0));
  a.begin_round(/*theta_norm=*/5.0, 1);  // no accepted norm yet: only ‖θ‖ bounds the first upload
  put(a, {3e20f, 4e20f});  // huge but finite
  auto r = a.add_scratch(1);
  ASSERT_TRUE(r);
  EXPECT_NE(r->find("norm of θ"), std::string::npos) << *r;
  put(a, {6, 8});  // norm 10 = 2 x ‖θ‖: allowed
  EXPECT_FALSE(a.add_scratch(1));
}

TEST(Aggregator, TheReferenceFollowsHonestNormsThatGrow) {
  // Round 0: norms ~1. Round 1: every site's norm is ~50 (H raised 50x): all refused by the
  // median rule, nothing applied. Round 2: their norms are the reference, so they pass.
  Aggregator a(2, opts(10.0));
  a.begin_round(0, 2);
  for (int i = 0; i < 3; ++i) {
    put(a, {0.6f, 0.8f});
    ASSERT_FALSE(a.add_scratch(1));
  }
  a.begin_round(0, 2);
  for (int i = 0; i < 3; ++i) {
    put(a, {30, 40});
    ASSERT_TRUE(a.add_scratch(1));
  }
  std::vector<float> mean(2);
  EXPECT_FALSE(a.finish(mean));
  a.begin_round(0, 2);
  EXPECT_DOUBLE_EQ(a.reference_median(), 50.0);
  put(a, {30, 40});
  EXPECT_FALSE(a.add_scratch(1));
}

TEST(Aggregator, OneRefusedOutlierBelowQuorumDoesNotMoveTheReference) {
  Aggregator a(2, opts(10.0));
  a.begin_round(0, 2);
  put(a, {0.6f, 0.8f});
  ASSERT_FALSE(a.add_scratch(1));
  a.begin_round(0, 2);
  put(a, {300, 400});  // a lone attacker, alone in its round
  ASSERT_TRUE(a.add_scratch(1));
  a.begin_round(0, 2);
  EXPECT_NEAR(a.reference_median(), 1.0, 1e-6);  // ‖(0.6f, 0.8f)‖ in double: 1 + 2.4e-8
}

TEST(Aggregator, ModesMatchNumPy) {
  fs::path dir = fs::temp_directory_path() / ("lh_agg_golden_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path out = dir / "golden.bin";
  std::string cmd = std::string(LONGHAUL_PYTHON) + " " + LONGHAUL_SOURCE_DIR +
                    "/tests/python/gen_aggregation_golden.py " + out.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out, std::ios::binary);
  int32_t hdr[2];
  f.read(reinterpret_cast<char*>(hdr), sizeof(hdr));
  const int numel = hdr[0], cases = hdr[1];
  ASSERT_GE(cases, 5);
  for (int c = 0; c < cases; ++c) {
    int32_t kmt[4];  // k, mode, trim, weighting
    f.read(reinterpret_cast<char*>(kmt), sizeof(kmt));
    const int k = kmt[0];
    AggregatorOptions o = opts(1e9);
    o.kind = kmt[1] == 0 ? AggregationKind::kMean : kmt[1] == 1 ? AggregationKind::kTrimmedMean : AggregationKind::kMedian;
    o.trim = kmt[2];
    o.weighting = kmt[3] == 0 ? Weighting::kTokens : kmt[3] == 1 ? Weighting::kUniform : Weighting::kNormalized;
    std::vector<double> w(k);
    f.read(reinterpret_cast<char*>(w.data()), k * sizeof(double));
    std::vector<int32_t> steps(k);
    f.read(reinterpret_cast<char*>(steps.data()), k * sizeof(int32_t));
    Aggregator a(numel, o);
    a.begin_round(0, 1);
    for (int j = 0; j < k; ++j) {
      f.read(reinterpret_cast<char*>(a.scratch().data()), numel * sizeof(float));
      ASSERT_FALSE(a.add_scratch(w[j], nullptr, steps[j])) << "case " << c;
    }
    std::vector<float> expect(numel), got(numel);
    f.read(reinterpret_cast<char*>(expect.data()), numel * sizeof(float));
    ASSERT_TRUE(f.good());
    ASSERT_TRUE(a.finish(got));
    for (int i = 0; i < numel; ++i)
      ASSERT_EQ(got[i], expect[i]) << "case " << c << " (" << to_string(o.kind) << ", k " << k << ", trim "
                                   << o.trim << ", " << to_string(o.weighting) << ") element " << i;
  }
  fs::remove_all(dir);
}

// FedNova by hand: site 1 ran H = 10 steps along (1, 0), site 2 H = 40 steps along (0, 1) with 4x
// the tokens. Token weighting lets the long site dominate 16:1 (its Δ is both 4x longer and 4x
// heavier); normalized averages the per-step directions at their token shares (0.2, 0.8) and
// rescales by the token-weighted mean H = (100·10 + 400·40) / 500 = 34.
TEST(Aggregator, NormalizedWeightingDividesByStepsAndRescalesByMeanSteps) {
  for (Weighting wt : {Weighting::kTokens, Weighting::kUniform, Weighting::kNormalized}) {
    AggregatorOptions o = opts(1e9);
    o.weighting = wt;
    Aggregator a(2, o);
    a.begin_round(0, 1);
    put(a, {10.f, 0.f});  // site 1: 10 steps of (1, 0)
    ASSERT_FALSE(a.add_scratch(100, nullptr, 10));
    put(a, {0.f, 40.f});  // site 2: 40 steps of (0, 1), 4x the tokens
    ASSERT_FALSE(a.add_scratch(400, nullptr, 40));
    std::vector<float> m(2);
    ASSERT_TRUE(a.finish(m));
    if (wt == Weighting::kTokens) {
      EXPECT_FLOAT_EQ(m[0], 10.f * 100 / 500);  // 2
      EXPECT_FLOAT_EQ(m[1], 40.f * 400 / 500);  // 32: the long site dominates 16:1
    } else if (wt == Weighting::kUniform) {
      EXPECT_FLOAT_EQ(m[0], 5.f);
      EXPECT_FLOAT_EQ(m[1], 20.f);
    } else {
      // Per-step directions (1,0) and (0,1) at token shares 0.2 / 0.8, times mean H 34: 4:1.
      EXPECT_FLOAT_EQ(m[0], 0.2f * 34);
      EXPECT_FLOAT_EQ(m[1], 0.8f * 34);
    }
  }
  Aggregator a(1, opts(1e9));
  a.begin_round(0, 1);
  put(a, {1.f});
  EXPECT_TRUE(a.add_scratch(1, nullptr, 0));  // no steps: refused
  EXPECT_EQ(parse_weighting("normalized"), Weighting::kNormalized);
  EXPECT_THROW(parse_weighting("fednova"), std::exception);
}

TEST(Aggregator, ParseAggregation) {
  EXPECT_EQ(parse_aggregation("median"), AggregationKind::kMedian);
  EXPECT_THROW(parse_aggregation("avg"), std::exception);
}

}  // namespace
}  // namespace longhaul::outer
