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

  // A site joined while the round is open: it becomes a participant.
  void add_participant(const std::string& site);
  UploadVerdict classify(const std::string& site, int64_t round) const;
  // Records the outcome of an accepted-for-processing upload; accepted=false: rejected content.
  void record(const std::string& site, bool accepted);

  bool can_close(Clock::time_point now) const;
  bool quorum_wait_log_due(Clock::time_point now, std::chrono::seconds log_every);
  void close() { open_ = false; }

  int accepted() const { return accepted_; }
  const std::set<std::string>& participants() const { return participants_; }
  const std::map<std::string, bool>& outcomes() const { return outcomes_; }  // site -> accepted
  Clock::time_point deadline() const { return deadline_; }
  int min_sites() const { return min_sites_; }

 private:
  bool open_ = false;
  int64_t round_ = -1;
  std::set<std::string> participants_;
  std::map<std::string, bool> outcomes_;
  int accepted_ = 0;
  int min_sites_ = 1;
  Clock::time_point deadline_{};
  Clock::time_point next_log_{};
};

}  // namespace longhaul::outer
