// The per-site H_k choice (sync.balance) and the smoothing of measured step rates.
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "outer/inner_steps_plan.h"

namespace longhaul::outer {
namespace {

const std::set<std::string> kSites = {"a", "b", "c"};

TEST(InnerStepsPlan, EqualStepsGivesEverySiteH) {
  auto p = plan_inner_steps(Balance::kEqualSteps, 40, 5, kSites, {{"a", 10}, {"b", 5}, {"c", 2.5}});
  for (const auto& s : kSites) EXPECT_EQ(p.at(s), 40) << s;
}

TEST(InnerStepsPlan, EqualTimeScalesByRateFastestRunsH) {
  // Speeds 4 : 2 : 1 (the 1:2:4 slowdowns of bench-hetero): H, H/2, H/4.
  auto p = plan_inner_steps(Balance::kEqualTime, 40, 5, kSites, {{"a", 10}, {"b", 5}, {"c", 2.5}});
  EXPECT_EQ(p.at("a"), 40);
  EXPECT_EQ(p.at("b"), 20);
  EXPECT_EQ(p.at("c"), 10);
  // Rounded to the nearest step; the fastest is whichever site it is.
  p = plan_inner_steps(Balance::kEqualTime, 10, 1, kSites, {{"a", 3}, {"b", 9}, {"c", 4}});
  EXPECT_EQ(p.at("b"), 10);
  EXPECT_EQ(p.at("a"), 3);  // 10 * 3/9 = 3.33
  EXPECT_EQ(p.at("c"), 4);  // 10 * 4/9 = 4.44
}

TEST(InnerStepsPlan, EqualTimeClampsToMinInnerSteps) {
  auto p = plan_inner_steps(Balance::kEqualTime, 40, 8, kSites, {{"a", 100}, {"b", 1}, {"c", 50}});
  EXPECT_EQ(p.at("a"), 40);
  EXPECT_EQ(p.at("b"), 8);  // 0.4 steps' worth, clamped up
  EXPECT_EQ(p.at("c"), 20);
  // min above H is clamped to H (every site runs H); min below 1 to 1.
  p = plan_inner_steps(Balance::kEqualTime, 10, 50, kSites, {{"a", 100}, {"b", 1}, {"c", 50}});
  EXPECT_EQ(p.at("b"), 10);
  p = plan_inner_steps(Balance::kEqualTime, 10, 0, kSites, {{"a", 100}, {"b", 1}, {"c", 50}});
  EXPECT_EQ(p.at("b"), 1);
}

TEST(InnerStepsPlan, EqualTimeWithAnUnknownRateRunsEqualRounds) {
  auto p = plan_inner_steps(Balance::kEqualTime, 40, 5, kSites, {{"a", 10}, {"b", 5}});  // c new
  for (const auto& s : kSites) EXPECT_EQ(p.at(s), 40) << s;
  p = plan_inner_steps(Balance::kEqualTime, 40, 5, kSites, {{"a", 10}, {"b", 5}, {"c", 0}});
  for (const auto& s : kSites) EXPECT_EQ(p.at(s), 40) << s;
  // Rates of sites outside this round do not matter.
  p = plan_inner_steps(Balance::kEqualTime, 40, 5, {"a", "b"}, {{"a", 10}, {"b", 5}, {"z", 1000}});
  EXPECT_EQ(p.at("a"), 40);
  EXPECT_EQ(p.at("b"), 20);
  EXPECT_EQ(p.size(), 2u);
}

TEST(InnerStepsPlan, ParseBalance) {
  EXPECT_EQ(parse_balance("equal_time"), Balance::kEqualTime);
  EXPECT_EQ(to_string(parse_balance("equal_steps")), "equal_steps");
  EXPECT_THROW(parse_balance("fair"), UserError);
}

TEST(StepRateTracker, SmoothsWithAnExponentialMovingAverage) {
  StepRateTracker t(0.5);
  t.add("a", 40, 4.0);  // 10 steps/s: the first measurement is taken as is
  EXPECT_DOUBLE_EQ(t.rates().at("a"), 10.0);
  t.add("a", 20, 1.0);  // 20 steps/s
  EXPECT_DOUBLE_EQ(t.rates().at("a"), 15.0);
  t.add("a", 0, 1.0);   // ignored: no steps
  t.add("a", 10, 0.0);  // ignored: no time
  t.add("a", 10, std::nan(""));
  EXPECT_DOUBLE_EQ(t.rates().at("a"), 15.0);
  t.forget("a");
  EXPECT_TRUE(t.rates().empty());
}

}  // namespace
}  // namespace longhaul::outer
