#include "outer/round_state.h"

#include "common/error.h"

namespace longhaul::outer {

const char* to_string(UploadVerdict v) {
  switch (v) {
    case UploadVerdict::kAccept: return "accept";
    case UploadVerdict::kLate: return "late";
    case UploadVerdict::kStale: return "stale";
    case UploadVerdict::kFuture: return "future";
    case UploadVerdict::kDuplicate: return "duplicate";
    case UploadVerdict::kNotMember: return "not-a-participant";
    case UploadVerdict::kNoRound: return "no-open-round";
  }
  return "?";
}

void RoundState::open(int64_t round, std::set<std::string> participants,
                      Clock::time_point deadline, int min_sites) {
  LH_CHECK(round > round_, "round ", round, " opened after ", round_);
  LH_CHECK(min_sites >= 1, "min_sites = ", min_sites);
  open_ = true;
  round_ = round;
  participants_ = std::move(participants);
  outcomes_.clear();
  stale_outcomes_.clear();
  stale_rounds_.clear();
  accepted_ = 0;
  min_sites_ = min_sites;
  deadline_ = deadline;
  next_log_ = deadline;
}

void RoundState::resume(int64_t next_round, std::map<std::string, int64_t> stale_eligible) {
  LH_CHECK(!open_ && next_round >= 0, "resume at round ", next_round);
  round_ = next_round - 1;
  missing_ = std::move(stale_eligible);
}

void RoundState::close() {
  if (!open_) return;
  open_ = false;
  // A site trains the round it was told to start; if it missed several, its upload is for the
  // first of them (it catches up on the results afterwards), so the earliest is kept.
  for (const auto& p : participants_)
    if (!outcomes_.count(p)) missing_.try_emplace(p, round_);
}

int64_t RoundState::staleness(const std::string& site) const {
  auto it = missing_.find(site);
  return it == missing_.end() ? 0 : round_ - it->second;
}

void RoundState::add_participant(const std::string& site) {
  if (open_) participants_.insert(site);
}

UploadVerdict RoundState::classify(const std::string& site, int64_t round) const {
  if (auto it = stale_rounds_.find(site); open_ && it != stale_rounds_.end() && it->second == round)
    return UploadVerdict::kDuplicate;
  // Also between rounds (none open): the caller holds such an upload until the next one opens.
  if (auto it = missing_.find(site); it != missing_.end() && round == it->second && (round < round_ || !open_))
    return UploadVerdict::kStale;
  if (round < round_ || (round == round_ && !open_)) return UploadVerdict::kLate;
  if (round > round_) return UploadVerdict::kFuture;
  if (!open_) return UploadVerdict::kNoRound;
  if (!participants_.count(site)) return UploadVerdict::kNotMember;
  if (outcomes_.count(site)) return UploadVerdict::kDuplicate;
  return UploadVerdict::kAccept;
}

void RoundState::record(const std::string& site, bool accepted) {
  LH_CHECK(open_ && participants_.count(site) && !outcomes_.count(site), "site ", site);
  outcomes_[site] = accepted;
  missing_.erase(site);  // it moved on: its missed round can no longer arrive
  if (accepted) ++accepted_;
}

void RoundState::record_stale(const std::string& site, bool accepted) {
  LH_CHECK(open_ && missing_.count(site) && !stale_outcomes_.count(site), "stale upload of ", site);
  stale_outcomes_[site] = accepted;
  stale_rounds_[site] = missing_.at(site);
  missing_.erase(site);
}

bool RoundState::can_close(Clock::time_point now) const {
  if (!open_) return false;
  bool all_reported = !participants_.empty() && outcomes_.size() == participants_.size();
  if (all_reported) return true;  // even if all were rejected: θ stays, round advances
  return now >= deadline_ && accepted_ >= min_sites_;
}

bool RoundState::quorum_wait_log_due(Clock::time_point now, std::chrono::seconds log_every) {
  if (!open_ || now < deadline_ || accepted_ >= min_sites_) return false;
  if (now < next_log_) return false;
  next_log_ = now + log_every;
  return true;
}

}  // namespace longhaul::outer
