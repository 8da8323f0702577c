// The fragment schedule (outer/fragment_schedule.h): offsets floor(p·H/P), at most one fragment
// per step, P = 1 is today's rounds of H steps.
#include "outer/fragment_schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "common/error.h"

namespace longhaul::outer {
namespace {

TEST(FragmentSchedule, OffsetsAreFloorOfPTimesHOverP) {
  const FragmentSchedule s(4, 10);
  EXPECT_EQ(s.offset(0), 0);
  EXPECT_EQ(s.offset(1), 2);  // 10/4 = 2.5
  EXPECT_EQ(s.offset(2), 5);
  EXPECT_EQ(s.offset(3), 7);  // 30/4 = 7.5
  const FragmentSchedule exact(4, 100);
  for (int p = 0; p < 4; ++p) EXPECT_EQ(exact.offset(p), 25 * p);
  const FragmentSchedule tight(5, 5);  // H = P: one fragment per step
  for (int p = 0; p < 5; ++p) EXPECT_EQ(tight.offset(p), p);
  EXPECT_THROW(s.offset(4), InvariantError);
  EXPECT_THROW(s.offset(-1), InvariantError);
}

TEST(FragmentSchedule, EachFragmentSyncsEveryHStepsAtItsOffset) {
  const FragmentSchedule s(4, 10);
  std::vector<int> at(41, -1);
  for (int64_t t = 0; t <= 40; ++t) at[t] = s.fragment_at(t);
  EXPECT_EQ(at[0], -1);  // nothing trained yet
  for (int64_t t : {10, 20, 30, 40}) EXPECT_EQ(at[t], 0) << t;
  for (int64_t t : {2, 12, 22, 32}) EXPECT_EQ(at[t], 1) << t;
  for (int64_t t : {5, 15, 25, 35}) EXPECT_EQ(at[t], 2) << t;
  for (int64_t t : {7, 17, 27, 37}) EXPECT_EQ(at[t], 3) << t;
  int syncs = 0;
  for (int64_t t = 1; t <= 40; ++t) syncs += at[t] >= 0;
  EXPECT_EQ(syncs, 16);  // 4 fragments x 4 periods, never two at one step
  EXPECT_EQ(s.sync_step(0, 1), 10);
  EXPECT_EQ(s.sync_step(0, 3), 30);
  EXPECT_EQ(s.sync_step(1, 1), 2);
  EXPECT_EQ(s.sync_step(3, 2), 17);
  for (int p = 0; p < 4; ++p)
    for (int64_t k = 1; k <= 5; ++k) EXPECT_EQ(s.fragment_at(s.sync_step(p, k)), p);
  EXPECT_EQ(s.next_sync_after(0), 2);
  EXPECT_EQ(s.next_sync_after(2), 5);
  EXPECT_EQ(s.next_sync_after(7), 10);
  EXPECT_EQ(s.next_sync_after(10), 12);
}

TEST(FragmentSchedule, AtMostOneFragmentPerStepForAnyPAndH) {
  for (int64_t H = 1; H <= 40; ++H)
    for (int P = 1; P <= H; ++P) {
      const FragmentSchedule s(P, H);
      std::vector<int> count(P, 0);
      int64_t last = 0;
      for (int64_t t = 1; t <= 3 * H; ++t) {
        const int p = s.fragment_at(t);
        if (p < 0) continue;
        ASSERT_LT(p, P);
        ++count[p];
        if (last > 0) {
          ASSERT_GE(t - last, H / P) << "P " << P << " H " << H;  // floor(H/P) steps apart at least
        }
        ASSERT_EQ(s.next_sync_after(last), t) << "P " << P << " H " << H;
        last = t;
      }
      for (int p = 0; p < P; ++p) ASSERT_EQ(count[p], 3) << "P " << P << " H " << H << " p " << p;
    }
}

TEST(FragmentSchedule, OneFragmentIsPlainDiLoCo) {
  const FragmentSchedule s(1, 50);
  for (int64_t t = 1; t <= 200; ++t) EXPECT_EQ(s.fragment_at(t), t % 50 == 0 ? 0 : -1) << t;
}

TEST(FragmentSchedule, NeedsOneToHFragments) {
  EXPECT_THROW(FragmentSchedule(0, 10), UserError);
  EXPECT_THROW(FragmentSchedule(11, 10), UserError);
  EXPECT_THROW(FragmentSchedule(1, 0), UserError);
  try {
    FragmentSchedule(8, 4);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("sync.fragments = 8 with H = 4"), std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(FragmentSchedule(10, 10));
}

// The round protocol's sequence: round r exchanges fragment_of_round(r) after steps_before(it)
// steps, so the cumulative steps of rounds land exactly on the schedule's sync steps, each
// fragment once per H steps, in step order.
TEST(FragmentSchedule, RoundsRunEveryFragmentsExchangesInStepOrder) {
  for (int64_t H = 1; H <= 30; ++H)
    for (int P = 1; P <= H; ++P) {
      const FragmentSchedule s(P, H);
      int64_t t = 0, sum_one_period = 0, gap = H;
      for (int64_t r = 0; r < 3 * P; ++r) {
        const int p = s.fragment_of_round(r);
        t += s.steps_before(p);
        ASSERT_EQ(s.fragment_at(t), p) << "P " << P << " H " << H << " round " << r;
        ASSERT_EQ(s.sync_step(p, r / P + 1), t) << "P " << P << " H " << H << " round " << r;
        if (r < P) sum_one_period += s.steps_before(p);
        gap = std::min(gap, s.steps_before(p));
      }
      ASSERT_EQ(sum_one_period, H) << "P " << P << " H " << H;
      ASSERT_EQ(s.min_gap(), gap) << "P " << P << " H " << H;
      ASSERT_GE(s.min_gap(), H / P);
    }
  const FragmentSchedule s(4, 10);  // offsets 0, 2, 5, 7
  EXPECT_EQ(s.fragment_of_round(0), 1);
  EXPECT_EQ(s.fragment_of_round(3), 0);
  EXPECT_EQ(s.steps_before(1), 2);
  EXPECT_EQ(s.steps_before(2), 3);
  EXPECT_EQ(s.steps_before(3), 2);
  EXPECT_EQ(s.steps_before(0), 3);
  EXPECT_EQ(s.min_gap(), 2);
  EXPECT_EQ(FragmentSchedule(1, 50).steps_before(0), 50);  // P = 1: rounds of H steps
  EXPECT_EQ(FragmentSchedule(1, 50).fragment_of_round(7), 0);
}

}  // namespace
}  // namespace longhaul::outer
