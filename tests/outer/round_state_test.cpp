#include <gtest/gtest.h>

#include "common/error.h"
#include "outer/round_state.h"

namespace longhaul::outer {
namespace {

using namespace std::chrono_literals;

TEST(RoundState, ClosesWhenEveryParticipantUploaded) {
  RoundState s;
  auto t0 = Clock::now();
  s.open(0, {"a", "b", "c"}, t0 + 60s, 2);
  EXPECT_EQ(s.classify("a", 0), UploadVerdict::kAccept);
  s.record("a", true);
  s.record("b", true);
  EXPECT_FALSE(s.can_close(t0));
  EXPECT_EQ(s.classify("a", 0), UploadVerdict::kDuplicate);
  s.record("c", true);
  EXPECT_TRUE(s.can_close(t0));
}

TEST(RoundState, ClosesAtDeadlineOnlyWithQuorum) {
  RoundState s;
  auto t0 = Clock::now();
  s.open(3, {"a", "b", "c"}, t0 + 10s, 2);
  s.record("a", true);
  EXPECT_FALSE(s.can_close(t0 + 11s));  // 1 < min_sites
  EXPECT_TRUE(s.quorum_wait_log_due(t0 + 11s, 60s));
  EXPECT_FALSE(s.quorum_wait_log_due(t0 + 30s, 60s));  // logs once a minute
  EXPECT_TRUE(s.quorum_wait_log_due(t0 + 72s, 60s));
  s.record("b", false);  // rejected content does not count towards quorum
  EXPECT_FALSE(s.can_close(t0 + 80s));
  EXPECT_EQ(s.classify("c", 3), UploadVerdict::kAccept);
  s.record("c", true);
  EXPECT_TRUE(s.can_close(t0 + 80s));
}

TEST(RoundState, LateFutureAndStrangerUploadsAreClassified) {
  RoundState s;
  auto t0 = Clock::now();
  EXPECT_EQ(s.classify("a", 0), UploadVerdict::kFuture);
  s.open(5, {"a"}, t0 + 10s, 1);
  EXPECT_EQ(s.classify("a", 4), UploadVerdict::kLate);
  EXPECT_EQ(s.classify("a", 6), UploadVerdict::kFuture);
  EXPECT_EQ(s.classify("z", 5), UploadVerdict::kNotMember);
  s.add_participant("z");
  EXPECT_EQ(s.classify("z", 5), UploadVerdict::kAccept);
  s.record("a", true);
  s.record("z", true);
  s.close();
  EXPECT_EQ(s.classify("a", 5), UploadVerdict::kLate);  // the round was applied: never twice
  EXPECT_THROW(s.open(5, {"a"}, t0, 1), InvariantError);
}

TEST(RoundState, AllRejectedStillCloses) {
  RoundState s;
  s.open(0, {"a"}, Clock::now() + 100s, 1);
  s.record("a", false);
  EXPECT_TRUE(s.can_close(Clock::now()));
  EXPECT_EQ(s.accepted(), 0);
}

}  // namespace
}  // namespace longhaul::outer
