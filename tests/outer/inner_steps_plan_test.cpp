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

TEST(SiteSpeeds, SmoothsWithAnExponentialMovingAverage) {
  SiteSpeeds t(0.5);
  t.add_compute("a", 40, 4.0);  // 10 steps/s: the first measurement is taken as is
  EXPECT_DOUBLE_EQ(t.step_rates().at("a"), 10.0);
  t.add_compute("a", 20, 1.0);  // 20 steps/s
  EXPECT_DOUBLE_EQ(t.step_rates().at("a"), 15.0);
  t.add_compute("a", 0, 1.0);   // ignored: no steps
  t.add_compute("a", 10, 0.0);  // ignored: no time
  t.add_compute("a", 10, std::nan(""));
  EXPECT_DOUBLE_EQ(t.step_rates().at("a"), 15.0);
  t.add_upload("a", 1000, 2.0);  // 500 B/s
  t.add_upload("a", 1000, 0.0);  // ignored (an unmeasurably fast transfer)
  t.add_download("a", 4000, 1.0);
  EXPECT_DOUBLE_EQ(t.find("a")->upload_bps, 500.0);
  EXPECT_DOUBLE_EQ(t.find("a")->comm_s(), 1000.0 / 500 + 4000.0 / 4000);
  EXPECT_DOUBLE_EQ(t.find("a")->overhead_s, -1.0);
  t.add_overhead("a", 2.0);
  t.add_overhead("a", 4.0);
  EXPECT_DOUBLE_EQ(t.find("a")->overhead_s, 3.0);
  EXPECT_EQ(t.find("b"), nullptr);
}

std::map<std::string, SiteSpeed> speeds(std::initializer_list<std::tuple<std::string, double, double>> v) {
  // (site, steps per second, communication seconds per round: 1 MB up and down at the rate that gives it)
  std::map<std::string, SiteSpeed> m;
  for (const auto& [id, rate, comm] : v) {
    SiteSpeed s;
    s.steps_per_s = rate;
    s.upload_bytes = s.download_bytes = 1e6;
    s.upload_bps = s.download_bps = 2e6 / comm;
    s.overhead_s = comm;
    m[id] = s;
  }
  return m;
}

TEST(AutoInnerSteps, SmallestHWhoseCommunicationIsAtMostTheTargetFraction) {
  // a: 10 steps/s, 1 s of transfers per round. f = 0.05: compute >= 19 s => H >= 190.
  auto sp = speeds({{"a", 10, 1.0}, {"b", 10, 0.5}});
  auto a = choose_auto_inner_steps(Balance::kEqualSteps, 0.05, 1, 1000, 7, {"a", "b"}, sp);
  EXPECT_TRUE(a.measured);
  EXPECT_EQ(a.h, 190);
  // Check the definition directly: with H = 190 site a's comm fraction is <= 5%, with 189 it is not.
  auto frac = [](double h) { return 1.0 / (1.0 + h / 10.0); };
  EXPECT_LE(frac(190), 0.05 + 1e-12);
  EXPECT_GT(frac(189), 0.05);
  EXPECT_DOUBLE_EQ(a.inputs.at("a").at("comm_s").get<double>(), 1.0);
}

TEST(AutoInnerSteps, EqualStepsIsBoundByEachSitesOwnRateEqualTimeByTheFastest) {
  // slow site s: 2 steps/s with 1 s of comm; fast site f: 8 steps/s with 0.25 s of comm.
  auto sp = speeds({{"s", 2, 1.0}, {"f", 8, 0.25}});
  // equal_steps: s needs H/2 >= 19 (H >= 38), f needs H/8 >= 4.75 (H >= 38): 38.
  EXPECT_EQ(choose_auto_inner_steps(Balance::kEqualSteps, 0.05, 1, 1000, 1, {"s", "f"}, sp).h, 38);
  // equal_time: all compute H/8 s; s needs H/8 >= 19 => H >= 152.
  EXPECT_EQ(choose_auto_inner_steps(Balance::kEqualTime, 0.05, 1, 1000, 1, {"s", "f"}, sp).h, 152);
}

TEST(AutoInnerSteps, ClampsAndKeepsThePreviousHUntilEverySiteIsMeasured) {
  auto sp = speeds({{"a", 10, 1.0}});
  EXPECT_EQ(choose_auto_inner_steps(Balance::kEqualSteps, 0.05, 1, 100, 5, {"a"}, sp).h, 100);
  EXPECT_EQ(choose_auto_inner_steps(Balance::kEqualSteps, 0.5, 20, 100, 5, {"a"}, sp).h, 20);  // bound 10
  // b never measured: previous H (clamped), not measured.
  auto a = choose_auto_inner_steps(Balance::kEqualSteps, 0.05, 10, 100, 5, {"a", "b"}, sp);
  EXPECT_FALSE(a.measured);
  EXPECT_EQ(a.h, 10);
  sp["b"].steps_per_s = 4;  // a rate but no transfer measured yet
  EXPECT_FALSE(choose_auto_inner_steps(Balance::kEqualSteps, 0.05, 10, 100, 50, {"a", "b"}, sp).measured);
  EXPECT_THROW(choose_auto_inner_steps(Balance::kEqualSteps, 1.0, 1, 100, 5, {"a"}, sp), std::exception);
}

TEST(ExpectedRoundSeconds, SlowestMembersOverheadPlusItsStepsAtItsRate) {
  auto sp = speeds({{"a", 10, 1.0}, {"b", 2, 3.0}});
  // a: 1 + 40/10 = 5 s; b: 3 + 10/2 = 8 s.
  auto e = expected_round_s({{"a", 40}, {"b", 10}}, sp);
  ASSERT_TRUE(e.has_value());
  EXPECT_DOUBLE_EQ(*e, 8.0);
  EXPECT_FALSE(expected_round_s({{"a", 40}, {"c", 10}}, sp).has_value());  // c unmeasured
  sp["a"].overhead_s = -1;
  EXPECT_FALSE(expected_round_s({{"a", 40}}, sp).has_value());
}

}  // namespace
}  // namespace longhaul::outer
