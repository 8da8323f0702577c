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

TEST(RoundState, AMissingParticipantsUploadCountsOnceInTheNextRoundAsStale) {
  RoundState s;
  auto t0 = Clock::now();
  s.open(7, {"fast", "slow", "gone"}, t0 + 10s, 1);
  s.record("fast", true);
  s.close();
  EXPECT_EQ(s.stale_eligible(), (std::map<std::string, int64_t>{{"slow", 7}, {"gone", 7}}));
  EXPECT_EQ(s.classify("slow", 7), UploadVerdict::kStale);  // between rounds: held for the next one
  EXPECT_EQ(s.classify("fast", 7), UploadVerdict::kLate);
  s.open(8, {"fast", "slow"}, t0 + 20s, 1);
  EXPECT_EQ(s.classify("slow", 7), UploadVerdict::kStale);
  EXPECT_EQ(s.classify("fast", 7), UploadVerdict::kLate);  // it contributed to round 7 already
  s.record_stale("slow", true);
  EXPECT_EQ(s.classify("slow", 7), UploadVerdict::kDuplicate);  // exactly once
  EXPECT_EQ(s.classify("slow", 8), UploadVerdict::kAccept);     // its own round-8 upload as well
  EXPECT_THROW(s.record_stale("fast", true), InvariantError);
  EXPECT_EQ(s.accepted(), 0);  // stale uploads never make the quorum
  EXPECT_EQ(s.stale_outcomes().at("slow"), true);
  s.record("fast", true);
  s.record("slow", true);
  s.close();
  EXPECT_EQ(s.stale_eligible(), (std::map<std::string, int64_t>{{"gone", 7}}));
  s.open(9, {"fast", "slow"}, t0 + 30s, 1);
  EXPECT_EQ(s.classify("slow", 7), UploadVerdict::kLate);  // counted already: never twice
  EXPECT_EQ(s.classify("gone", 7), UploadVerdict::kStale);  // two rounds late, still eligible
  EXPECT_EQ(s.staleness("gone"), 2);
  EXPECT_TRUE(s.stale_outcomes().empty());
}

TEST(RoundState, ASiteThatMissedSeveralRoundsMayUploadOnlyForTheFirst) {
  RoundState s;
  auto t0 = Clock::now();
  s.open(1, {"a", "b"}, t0, 1);
  s.record("a", true);
  s.close();
  s.open(2, {"a", "b"}, t0, 1);
  s.record("a", true);
  s.close();
  s.open(3, {"a", "b"}, t0, 1);
  EXPECT_EQ(s.classify("b", 2), UploadVerdict::kLate);  // it was training round 1 all along
  EXPECT_EQ(s.classify("b", 1), UploadVerdict::kStale);
  EXPECT_EQ(s.staleness("b"), 2);
  s.record("b", true);  // its round-3 upload first: the missed round can no longer arrive
  EXPECT_EQ(s.classify("b", 1), UploadVerdict::kLate);
  EXPECT_EQ(s.staleness("b"), 0);
}

TEST(RoundState, ResumeMakesEarlierRoundsLateAndRestoresStaleEligibility) {
  RoundState s;
  auto t0 = Clock::now();
  s.resume(12, {{"slow", 11}});
  EXPECT_EQ(s.classify("a", 11), UploadVerdict::kLate);  // before the restart: not "future"
  EXPECT_EQ(s.classify("a", 13), UploadVerdict::kFuture);
  s.open(12, {"a", "slow"}, t0 + 10s, 1);
  EXPECT_EQ(s.classify("slow", 11), UploadVerdict::kStale);
  EXPECT_EQ(s.classify("a", 11), UploadVerdict::kLate);
}

TEST(RoundState, AdvanceDeadlineOnlyMovesItEarlier) {
  RoundState s;
  auto t0 = Clock::now();
  s.open(0, {"a", "b"}, t0 + 100s, 1);
  s.advance_deadline(t0 + 200s);
  EXPECT_EQ(s.deadline(), t0 + 100s);
  s.advance_deadline(t0 + 5s);
  EXPECT_EQ(s.deadline(), t0 + 5s);
  s.record("a", true);
  EXPECT_FALSE(s.can_close(t0 + 4s));
  EXPECT_TRUE(s.can_close(t0 + 6s));
}

}  // namespace
}  // namespace longhaul::outer
