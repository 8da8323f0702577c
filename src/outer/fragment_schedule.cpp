#include "outer/fragment_schedule.h"

#include <algorithm>
#include <string>

#include "common/error.h"

namespace longhaul::outer {

// H above this could overflow p * H for p < P <= H; far beyond any inner-step count in use.
static constexpr int64_t kMaxInnerSteps = int64_t{1} << 31;

FragmentSchedule::FragmentSchedule(int fragments, int64_t inner_steps)
    : fragments_(fragments), h_(inner_steps) {
  if (inner_steps < 1 || inner_steps > kMaxInnerSteps)
    throw UserError("inner steps H = " + std::to_string(inner_steps) +
                    ": need 1 <= H <= " + std::to_string(kMaxInnerSteps));
  if (fragments < 1 || fragments > inner_steps)
    throw UserError(
        "sync.fragments = " + std::to_string(fragments) +
        " with H = " + std::to_string(inner_steps) +
        " inner steps: need 1 <= sync.fragments <= H (each fragment synchronizes at its own step "
        "offset p*H/P within the H steps)");
}

int64_t FragmentSchedule::offset(int p) const {
  LH_CHECK(p >= 0 && p < fragments_, "fragment ", p, " of ", fragments_);
  return static_cast<int64_t>(p) * h_ / fragments_;
}

int64_t FragmentSchedule::sync_step(int p, int64_t k) const {
  LH_CHECK(k >= 1, "exchange ", k, " (counted from 1)");
  const int64_t o = offset(p);
  return o == 0 ? k * h_ : o + (k - 1) * h_;
}

int FragmentSchedule::fragment_at(int64_t s) const {
  if (s < 1) return -1;
  const int64_t r = s % h_;
  // offset(p) = floor(p*H/P) <= r  <=>  p*H < (r+1)*P  <=>  p <= ((r+1)*P - 1) / H: the
  // largest fragment whose offset is <= r; it syncs iff its offset is exactly r.
  const int p = static_cast<int>(((r + 1) * fragments_ - 1) / h_);
  return offset(p) == r ? p : -1;
}

int64_t FragmentSchedule::next_sync_after(int64_t s) const {
  LH_CHECK(s >= 0, "step ", s);
  const int64_t base = s - s % h_;  // start of s's period
  for (int64_t period = base;; period += h_) {
    for (int p = 0; p < fragments_; ++p) {
      const int64_t t = period + offset(p);
      if (t > s && t >= 1) return t;
    }
  }
}

int FragmentSchedule::fragment_of_round(int64_t round) const {
  LH_CHECK(round >= 0, "round ", round);
  return static_cast<int>((round + 1) % fragments_);
}

int64_t FragmentSchedule::steps_before(int p) const {
  LH_CHECK(p >= 0 && p < fragments_, "fragment ", p, " of ", fragments_);
  return p == 0 ? h_ - offset(fragments_ - 1) : offset(p) - offset(p - 1);
}

int64_t FragmentSchedule::min_gap() const {
  int64_t g = h_;
  for (int p = 0; p < fragments_; ++p) g = std::min(g, steps_before(p));
  return g;
}

}  // namespace longhaul::outer
