#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "outer/aggregator.h"

namespace longhaul::outer {
namespace {

void put(Aggregator& a, const std::vector<float>& v) {
  std::copy(v.begin(), v.end(), a.scratch().begin());
}

TEST(Aggregator, TokenWeightedMean) {
  Aggregator a(3, 10.0);
  a.begin_round();
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
  Aggregator a(4, 10.0);
  a.begin_round();
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
  Aggregator a(2, 5.0);
  a.begin_round();
  put(a, {3, 4});  // norm 5
  ASSERT_FALSE(a.add_scratch(1));
  a.begin_round();
  EXPECT_DOUBLE_EQ(a.reference_median(), 5.0);
  put(a, {30, 40});  // norm 50 > 5 x 5
  EXPECT_TRUE(a.add_scratch(1));
  std::vector<float> mean(2, -1);
  EXPECT_FALSE(a.finish(mean));  // nothing accepted: θ must stay
  EXPECT_EQ(mean[0], -1);
}

}  // namespace
}  // namespace longhaul::outer
