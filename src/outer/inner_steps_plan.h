// Per-site inner steps H_k for one round (sync.balance), from each site's measured inner-step
// rate. The goal of "equal_time" is that every site finishes its inner steps at the same
// moment, so no site's accelerators idle while the slowest one computes ("dynamic local
// updates", Liu et al. 2024, arXiv 2401.09135):
//   equal_steps:  H_k = H for every site (classic DiLoCo).
//   equal_time:   H_k = clamp(round(H · r_k / r_max), H_min, H), r_k the site's smoothed
//                 steps per second, r_max the fastest's: the fastest site runs H, a site half as
//                 fast H/2. While any participant's rate is unknown (its first round), every
//                 site runs H: rates are measured on equal rounds first.
// Rates are smoothed over rounds by SiteSpeeds (site_speeds.h).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "outer/site_speeds.h"

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

// sync.inner_steps = "auto": the smallest H in [min_h, max_h] for which every member spends
// at most `target` (sync.target_comm_fraction, in (0, 1)) of its round communicating:
//   c_k = the member's transfer seconds per round (SiteSpeed::comm_s), r_k its steps per second;
//   equal_steps: site k computes H / r_k      =>  H >= c_k · r_k   · (1 − f) / f
//   equal_time:  every site computes H / r_max =>  H >= c_k · r_max · (1 − f) / f
// H = ceil of the largest bound, clamped. While a member lacks any of those measurements (its
// first rounds), H stays `previous` (clamped): the caller starts a run at min_h, so the first,
// measuring rounds are short. `inputs` says what was used, for the log and the metrics line.
struct AutoInnerSteps {
  int64_t h = 1;
  bool measured = false;          // false: `previous` kept for want of measurements
  nlohmann::json inputs;          // {site: {steps_per_s, comm_s}, "bound": unclamped H}
};
AutoInnerSteps choose_auto_inner_steps(Balance balance, double target, int64_t min_h, int64_t max_h,
                                       int64_t previous, const std::set<std::string>& sites,
                                       const std::map<std::string, SiteSpeed>& speeds);

// equal_time round close: seconds after a round opens by which every member's upload is
// expected to have arrived, max over members of overhead_k + H_k / r_k; nullopt while a member
// is unmeasured. The coordinator closes such a round (quorum given) at (1 + margin) × this.
std::optional<double> expected_round_s(const std::map<std::string, int64_t>& plan,
                                       const std::map<std::string, SiteSpeed>& speeds);

}  // namespace longhaul::outer
