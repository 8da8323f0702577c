// The state machine of one round at the coordinator (no I/O, no torch: unit-testable).
//
// A round r opens with a set of participants (the sites joined when it opened, plus sites that
// join while it is open) and a deadline. It may close when
//   (a) every participant has uploaded (accepted or rejected; with none accepted the
//       coordinator skips the outer step and θ is unchanged), or
//   (b) the deadline has passed and at least `min_sites` uploads were accepted.
// Below quorum at the deadline it keeps waiting; quorum_wait_log_due() says when to log that
// (every `log_every`). A site that disconnects stays a participant until the round closes: it
// may reconnect and upload, and its absence is what the deadline is for.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace longhaul::outer {

using Clock = std::chrono::steady_clock;

enum class UploadVerdict {
  kAccept,      // first upload of this participant for the open round
  kLate,        // for a round that already closed (or before this one): dropped, site resyncs
  kStale,       // for a closed round the site was a participant of and missed (and has not
                // uploaded for since): counts in the open round (or, between rounds, the next
                // one), weight discounted by staleness
  kFuture,      // for a round not opened yet: protocol error
  kDuplicate,   // this participant already uploaded this round (retry): ignored, acked again
  kNotMember,   // site is not a participant of the open round
  kNoRound,     // no round is open
};
const char* to_string(UploadVerdict v);

class RoundState {
 public:
  // Opens round `round`; participants may be empty (sites join later).
  void open(int64_t round, std::set<std::string> participants, Clock::time_point deadline,
            int min_sites);
  bool is_open() const { return open_; }
  int64_t round() const { return round_; }

  // After a coordinator restart: rounds before `next_round` are closed (uploads for them are
  // late, not future); `stale_eligible` as stale_eligible() returned it (from the checkpoint).
  void resume(int64_t next_round, std::map<std::string, int64_t> stale_eligible);
  // A site joined while the round is open: it becomes a participant.
  void add_participant(const std::string& site);
  UploadVerdict classify(const std::string& site, int64_t round) const;
  // Records the outcome of an accepted-for-processing upload; accepted=false: rejected content.
  void record(const std::string& site, bool accepted);
  // Same for an upload classified kStale (at most one per site and missed round; never counts
  // toward quorum).
  void record_stale(const std::string& site, bool accepted);
  // Rounds between the missed round a site may still upload for and the open one (>= 1).
  int64_t staleness(const std::string& site) const;

  bool can_close(Clock::time_point now) const;
  bool quorum_wait_log_due(Clock::time_point now, std::chrono::seconds log_every);
  // Closes the round; its participants without an outcome may still upload for it (kStale)
  // while a later round is open, until they upload anything else.
  void close();

  int accepted() const { return accepted_; }
  const std::set<std::string>& participants() const { return participants_; }
  const std::map<std::string, bool>& outcomes() const { return outcomes_; }  // site -> accepted
  // Stale uploads counted in the open round: site -> accepted.
  const std::map<std::string, bool>& stale_outcomes() const { return stale_outcomes_; }
  // site -> the missed round it may still upload for (for the checkpoint).
  const std::map<std::string, int64_t>& stale_eligible() const { return missing_; }
  Clock::time_point deadline() const { return deadline_; }
  // Moves the deadline earlier (never later): the equal_time close.
  void advance_deadline(Clock::time_point t) { if (t < deadline_) deadline_ = next_log_ = t; }
  int min_sites() const { return min_sites_; }

 private:
  bool open_ = false;
  int64_t round_ = -1;
  std::set<std::string> participants_;
  std::map<std::string, bool> outcomes_;
  std::map<std::string, int64_t> missing_;      // site -> earliest round it missed, since its last upload
  std::map<std::string, bool> stale_outcomes_;  // stale uploads counted in the open round
  std::map<std::string, int64_t> stale_rounds_;  // ... and the rounds they were for
  int accepted_ = 0;
  int min_sites_ = 1;
  Clock::time_point deadline_{};
  Clock::time_point next_log_{};
};

}  // namespace longhaul::outer
