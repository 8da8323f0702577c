#include "inner/throughput_balancer.h"

#include <gtest/gtest.h>

#include <numeric>

#include "common/error.h"

namespace longhaul::inner {
namespace {

const BalancerOptions kNoWarmup = BalancerOptions{}.skip(0);

int64_t sum(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }

TEST(ThroughputBalancer, UnmeasuredWorkersSplitEqually) {
  ThroughputBalancer b(3);
  EXPECT_EQ(b.split(9), (std::vector<int64_t>{3, 3, 3}));
  // Remainders go to the lowest indices, deterministically.
  EXPECT_EQ(b.split(10), (std::vector<int64_t>{4, 3, 3}));
}

TEST(ThroughputBalancer, SplitIsProportionalToRates) {
  ThroughputBalancer b(3, kNoWarmup);
  b.record(0, 10, 1.0);  // 10 seq/s
  b.record(1, 20, 1.0);  // 20 seq/s
  b.record(2, 40, 1.0);  // 40 seq/s
  EXPECT_EQ(b.split(70), (std::vector<int64_t>{10, 20, 40}));
  const auto s = b.split(29);
  EXPECT_EQ(sum(s), 29);
  EXPECT_EQ(s, (std::vector<int64_t>{4, 8, 17}));  // exact 4.14, 8.29, 16.57: largest remainder
}

TEST(ThroughputBalancer, MovingAverageFollowsNewRates) {
  ThroughputBalancer b(1, BalancerOptions{}.alpha(0.5).skip(0));
  b.record(0, 10, 1.0);
  EXPECT_DOUBLE_EQ(b.measured_rate(0), 10.0);
  b.record(0, 30, 1.0);
  EXPECT_DOUBLE_EQ(b.measured_rate(0), 20.0);
  b.record(0, 0, 0.0);  // no work: no measurement
  EXPECT_DOUBLE_EQ(b.measured_rate(0), 20.0);
}

TEST(ThroughputBalancer, SlowWorkerKeepsMinimumShareAndUnmeasuredGetsMean) {
  ThroughputBalancer b(3, BalancerOptions{}.min(1).skip(0));
  b.record(0, 1000, 1.0);
  b.record(1, 1, 1.0);  // 1000x slower: still gets one sequence to stay measured
  const auto s = b.split(12);
  EXPECT_EQ(sum(s), 12);
  EXPECT_GE(s[1], 1);
  // Worker 2 is unmeasured: it counts at the mean of the measured rates (500.5), so it gets
  // about a third of the batch.
  EXPECT_NEAR(static_cast<double>(s[2]), 4.0, 1.0);
  // Fewer sequences than workers: nobody is guaranteed one.
  EXPECT_EQ(sum(b.split(2)), 2);
  EXPECT_EQ(b.split(0), (std::vector<int64_t>{0, 0, 0}));
}

TEST(ThroughputBalancer, WarmupMeasurementsAreDiscarded) {
  ThroughputBalancer b(2, BalancerOptions{}.skip(1));
  b.record(0, 10, 100.0);  // first step: one-time costs, ignored
  EXPECT_EQ(b.measured_rate(0), 0.0);
  b.record(0, 10, 1.0);
  EXPECT_DOUBLE_EQ(b.measured_rate(0), 10.0);
}

TEST(ThroughputBalancer, SetRatesReplacesAll) {
  ThroughputBalancer b(2);
  b.set_rates({1.0, 3.0});
  EXPECT_EQ(b.split(8), (std::vector<int64_t>{2, 6}));
  EXPECT_THROW(b.set_rates({1.0}), InvariantError);
  EXPECT_THROW(b.set_rates({1.0, -1.0}), InvariantError);
}

TEST(ThroughputBalancer, MicroBatchesRespectTheCap) {
  EXPECT_EQ(ThroughputBalancer::micro_batches(0, 8), 0);
  EXPECT_EQ(ThroughputBalancer::micro_batches(8, 8), 1);
  EXPECT_EQ(ThroughputBalancer::micro_batches(9, 8), 2);
  EXPECT_EQ(ThroughputBalancer::micro_batches(3, 1), 3);
  EXPECT_THROW(ThroughputBalancer::micro_batches(3, 0), InvariantError);
}

TEST(ThroughputBalancer, RejectsBadOptions) {
  EXPECT_THROW(ThroughputBalancer(0), InvariantError);
  EXPECT_THROW(ThroughputBalancer(2, BalancerOptions{}.alpha(0.0)), InvariantError);
  EXPECT_THROW(ThroughputBalancer(2, BalancerOptions{}.alpha(1.5)), InvariantError);
  EXPECT_THROW(ThroughputBalancer(2, BalancerOptions{}.skip(-1)), InvariantError);
}

}  // namespace
}  // namespace longhaul::inner
