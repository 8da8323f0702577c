// When each of P fragments (fragment_layout.h) synchronizes, in a site's inner steps.
//
// Steps are counted as completed inner steps s = 1, 2, ... since the site started (or since
// the schedule's origin). Fragment p has the offset
//     offset(p) = floor(p * H / P)            (integer division of the exact product)
// in [0, H), and synchronizes after step s iff s >= 1 and s mod H == offset(p):
//     fragment 0 at H, 2H, 3H, ...            (P = 1: exactly today's rounds of H steps)
//     fragment p > 0 at offset(p), offset(p) + H, ...
// so fragment p's first exchange covers offset(p) inner steps and every later one H. Requires
// 1 <= P <= H: then consecutive offsets differ by floor(H/P) or more (>= 1), so at most one
// fragment synchronizes after any step and consecutive exchanges are >= floor(H/P) steps apart
// — the window an overlapped exchange (sync.overlap_steps = τ < H/P) has to finish in.
// Example: H = 10, P = 4: offsets 0, 2, 5, 7; fragment 2 syncs after steps 5, 15, 25, ...
#pragma once

#include <cstdint>

namespace longhaul::outer {

class FragmentSchedule {
 public:
  // Throws UserError unless 1 <= fragments <= inner_steps (the message names sync.fragments
  // and the inner steps H).
  FragmentSchedule(int fragments, int64_t inner_steps);

  int fragments() const { return fragments_; }
  int64_t inner_steps() const { return h_; }
  // floor(p * H / P), in [0, H); InvariantError unless 0 <= p < P.
  int64_t offset(int p) const;
  // The completed-step count after which fragment p's k-th exchange (k >= 1) happens:
  // k * H for p = 0, offset(p) + (k - 1) * H otherwise.
  int64_t sync_step(int p, int64_t k) const;
  // The fragment that synchronizes after completed step s, or -1 (also for s < 1).
  int fragment_at(int64_t s) const;
  // The first step > s after which some fragment synchronizes (s >= 0).
  int64_t next_sync_after(int64_t s) const;

  // The round protocol (issue #11) runs every fragment's exchanges as ONE sequence of rounds in
  // the order they happen: round r = 0, 1, ... exchanges fragment_of_round(r) = (r + 1) mod P
  // (fragment 1 first and fragment 0 last in each period of H steps; P = 1: always 0), after
  // steps_before(that fragment) inner steps since the previous round's exchange. Fragment p's
  // k-th exchange is then round k·P − 1 + p (p > 0) or k·P − 1 (p = 0), at sync_step(p, k).
  int fragment_of_round(int64_t round) const;
  // Inner steps from the previous exchange to fragment p's: offset(p) − offset(p − 1) for
  // p > 0, H − offset(P − 1) for p = 0 (P = 1: H). Over the P fragments they sum to H.
  int64_t steps_before(int p) const;
  // The fewest steps between two consecutive exchanges (>= floor(H/P) >= 1): an overlapped
  // exchange has sync.overlap_steps < min_gap() steps to finish in.
  int64_t min_gap() const;

 private:
  int fragments_;
  int64_t h_;
};

}  // namespace longhaul::outer
