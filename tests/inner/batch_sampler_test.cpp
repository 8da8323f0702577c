// The batch sampler: windows and their shifted targets, determinism, and a state that
// restores the exact stream of batches (what a resumed run relies on).
#include "inner/batch_sampler.h"

#include <gtest/gtest.h>

#include <numeric>

namespace longhaul::inner {
namespace {

std::vector<uint16_t> ramp(size_t n) {
  std::vector<uint16_t> t(n);
  std::iota(t.begin(), t.end(), 0);
  return t;
}

TEST(BatchSampler, WindowsAreContiguousAndTargetsShiftedByOne) {
  auto tokens = ramp(1000);
  BatchSampler s(tokens, 5, 16, 42);
  for (int k = 0; k < 20; ++k) {
    Batch b = s.next();
    ASSERT_EQ(b.x.sizes(), (std::vector<int64_t>{5, 16}));
    ASSERT_EQ(b.y.sizes(), (std::vector<int64_t>{5, 16}));
    ASSERT_EQ(b.x.dtype(), torch::kInt64);
    auto x = b.x.accessor<int64_t, 2>();
    auto y = b.y.accessor<int64_t, 2>();
    for (int r = 0; r < 5; ++r) {
      ASSERT_GE(x[r][0], 0);
      ASSERT_LE(x[r][0] + 16, 999);
      for (int t = 0; t < 16; ++t) {
        ASSERT_EQ(x[r][t], x[r][0] + t);
        ASSERT_EQ(y[r][t], x[r][t] + 1);
      }
    }
  }
  EXPECT_EQ(s.state().draws, 100u);
}

TEST(BatchSampler, SameSeedSameBatchesOtherSeedOtherBatches) {
  auto tokens = ramp(5000);
  BatchSampler a(tokens, 4, 8, 1), b(tokens, 4, 8, 1), c(tokens, 4, 8, 2);
  for (int k = 0; k < 5; ++k) {
    auto ba = a.next(), bb = b.next(), bc = c.next();
    EXPECT_TRUE(torch::equal(ba.x, bb.x));
    EXPECT_FALSE(torch::equal(ba.x, bc.x));
  }
}

TEST(BatchSampler, RestoredStateContinuesTheSameStream) {
  auto tokens = ramp(3000);
  BatchSampler ref(tokens, 3, 8, 9);
  for (int k = 0; k < 7; ++k) ref.next();
  SamplerState saved = ref.state();
  std::vector<torch::Tensor> expected;
  for (int k = 0; k < 5; ++k) expected.push_back(ref.next().x);

  BatchSampler resumed(tokens, 3, 8, 9);
  resumed.set_state(saved);
  for (int k = 0; k < 5; ++k) EXPECT_TRUE(torch::equal(resumed.next().x, expected[k])) << k;
}

TEST(BatchSampler, CoversTheWholeRangeIncludingTheLastWindow) {
  auto tokens = ramp(20);  // T = 8: starts 0..11
  BatchSampler s(tokens, 64, 8, 3);
  std::vector<int> seen(12, 0);
  for (int k = 0; k < 10; ++k) {
    auto x = s.next().x;
    for (int r = 0; r < 64; ++r) seen.at(x[r][0].item<int64_t>())++;
  }
  for (int i = 0; i < 12; ++i) EXPECT_GT(seen[i], 0) << "start " << i << " never drawn";
}

TEST(BatchSampler, EvenlySpacedEvalOffsetsSpanTheStream) {
  auto off = evenly_spaced_offsets(101, 10, 5);  // last start = 90
  EXPECT_EQ(off, (std::vector<int64_t>{0, 22, 45, 67, 90}));
  EXPECT_EQ(evenly_spaced_offsets(11, 10, 3), (std::vector<int64_t>{0, 0, 0}));
}

}  // namespace
}  // namespace longhaul::inner
