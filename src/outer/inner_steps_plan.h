// Per-site inner steps H_k for one round (sync.balance), from each site's measured inner-step
// rate. The goal of "equal_time" is that every site finishes its inner steps at the same
// moment, so no site's accelerators idle while the slowest one computes ("dynamic local
// updates", Liu et al. 2024, arXiv 2401.09135):
//   equal_steps:  H_k = H for every site (classic DiLoCo).
//   equal_time:   H_k = clamp(round(H · r_k / r_max), H_min, H), r_k the site's smoothed
//                 steps per second, r_max the fastest's: the fastest site runs H, a site half as
//                 fast H/2. While any participant's rate is unknown (its first round), every
//                 site runs H: rates are measured on equal rounds first.
// Rates are smoothed over rounds by StepRateTracker (an exponential moving average of
// steps / compute seconds, as each upload reports them).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace longhaul::outer {

enum class Balance { kEqualSteps, kEqualTime };
// "equal_steps" | "equal_time"; UserError otherwise.
Balance parse_balance(const std::string& s);
std::string to_string(Balance b);

// H_k for each of `sites`. inner_steps = H >= 1, min_inner_steps in [1, H] (clamped into it).
// rates: smoothed steps per second by site (absent or <= 0: unknown).
std::map<std::string, int64_t> plan_inner_steps(Balance balance, int64_t inner_steps,
                                                int64_t min_inner_steps,
                                                const std::set<std::string>& sites,
                                                const std::map<std::string, double>& rates);

// Exponential moving average of each site's inner steps per second.
class StepRateTracker {
 public:
  explicit StepRateTracker(double alpha = 0.5) : alpha_(alpha) {}
  // One round's report; ignored unless steps >= 1 and compute_s is finite and > 0.
  void add(const std::string& site, int64_t steps, double compute_s);
  const std::map<std::string, double>& rates() const { return rates_; }
  void forget(const std::string& site) { rates_.erase(site); }

 private:
  double alpha_;  // weight of the newest measurement, (0, 1]
  std::map<std::string, double> rates_;
};

}  // namespace longhaul::outer
