// A DiLoCo site's inner lr follows the run's progress (Trainer::follow_schedule): the schedule
// at fractional positions, equal to nanoGPT's at whole steps, and a trainer that runs H_k steps
// covering H steps of the schedule (stride H / H_k) ends where a full-H site ends.
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "inner/corpus.h"
#include "inner/lr_schedule.h"
#include "inner/trainer.h"
#include "trainer_test_util.h"

namespace longhaul::inner {
namespace {

InnerOptimConfig sched() {
  InnerOptimConfig c;
  c.lr = 1.0;
  c.min_lr = 0.1;
  c.warmup_steps = 10;
  c.decay_steps = 110;
  return c;
}

TEST(LrScheduleProgress, PositionEqualsStepScheduleAtWholeStepsAndInterpolatesBetween) {
  const auto c = sched();
  for (int64_t s = 0; s < 130; ++s) EXPECT_EQ(lr_at_position(static_cast<double>(s), c), lr_at(s, c)) << s;
  EXPECT_DOUBLE_EQ(lr_at_position(4.5, c), 5.5 / 11.0);  // warmup: (pos + 1) / (warmup + 1)
  EXPECT_DOUBLE_EQ(lr_at_position(60.0, c), lr_at(60, c));
  for (double p = 10.25; p < 110; p += 1.0) {  // strictly between its whole neighbours
    EXPECT_LT(lr_at_position(p, c), lr_at(static_cast<int64_t>(p), c)) << p;
    EXPECT_GT(lr_at_position(p, c), lr_at(static_cast<int64_t>(p) + 1, c)) << p;
  }
  EXPECT_THROW(lr_at_position(-0.5, c), InvariantError);
  EXPECT_THROW(lr_at_position(std::nan(""), c), InvariantError);
}

TEST(LrScheduleProgress, TrainerFollowsTheRunsProgressNotItsOwnStepCount) {
  TrainConfig cfg = testing::tiny_config(testing::tiny_corpus_dir().string());
  cfg.optim.lr = 1e-3;
  cfg.optim.min_lr = 1e-4;
  cfg.optim.warmup_steps = 2;
  cfg.optim.decay_steps = 40;
  auto corpus = std::make_shared<const Corpus>(load_corpus(cfg.data));
  // A slow site: H_k = 2 of H = 8 per round, rounds 0..2 (schedule positions 0, 8, 16).
  Trainer slow(cfg, corpus);
  std::vector<double> lrs;
  for (int r = 0; r < 3; ++r) {
    slow.follow_schedule(8.0 * r, 8.0 / 2.0);
    slow.train_steps(2, [&](const StepResult& s) { lrs.push_back(s.lr); });
  }
  ASSERT_EQ(lrs.size(), 6u);
  const double want[] = {0, 4, 8, 12, 16, 20};  // its steps sample the run's schedule every 4
  for (size_t i = 0; i < lrs.size(); ++i) EXPECT_DOUBLE_EQ(lrs[i], lr_at_position(want[i], cfg.optim)) << i;
  EXPECT_EQ(slow.steps_done(), 6);  // its own count is unaffected
  EXPECT_DOUBLE_EQ(slow.schedule_position(), 24.0);  // where the next round's start will be
  // Without follow_schedule: the trainer's own step count, as before.
  Trainer own(cfg, corpus);
  EXPECT_LT(own.schedule_position(), 0);
  own.train_steps(3, [&](const StepResult& s) { EXPECT_DOUBLE_EQ(s.lr, lr_at(own.steps_done() - 1, cfg.optim)); });
  EXPECT_THROW(own.follow_schedule(-1, 1), InvariantError);
  EXPECT_THROW(own.follow_schedule(0, 0), InvariantError);
}

}  // namespace
}  // namespace longhaul::inner
