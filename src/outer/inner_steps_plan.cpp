#include "outer/inner_steps_plan.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace longhaul::outer {

Balance parse_balance(const std::string& s) {
  if (s == "equal_steps") return Balance::kEqualSteps;
  if (s == "equal_time") return Balance::kEqualTime;
  throw UserError("sync.balance '" + s + "': expected equal_steps | equal_time");
}

std::string to_string(Balance b) { return b == Balance::kEqualTime ? "equal_time" : "equal_steps"; }

std::map<std::string, int64_t> plan_inner_steps(Balance balance, int64_t inner_steps,
                                                int64_t min_inner_steps,
                                                const std::set<std::string>& sites,
                                                const std::map<std::string, double>& rates) {
  LH_CHECK(inner_steps >= 1, "inner_steps = ", inner_steps);
  const int64_t lo = std::clamp<int64_t>(min_inner_steps, 1, inner_steps);
  std::map<std::string, int64_t> plan;
  for (const auto& s : sites) plan[s] = inner_steps;
  if (balance == Balance::kEqualSteps) return plan;
  double fastest = 0;
  for (const auto& s : sites) {
    auto it = rates.find(s);
    if (it == rates.end() || !(it->second > 0) || !std::isfinite(it->second)) return plan;  // unknown
    fastest = std::max(fastest, it->second);
  }
  for (const auto& s : sites) {
    const double h = std::round(static_cast<double>(inner_steps) * rates.at(s) / fastest);
    plan[s] = std::clamp(static_cast<int64_t>(h), lo, inner_steps);
  }
  return plan;
}

void StepRateTracker::add(const std::string& site, int64_t steps, double compute_s) {
  if (steps < 1 || !std::isfinite(compute_s) || compute_s <= 0) return;
  const double rate = static_cast<double>(steps) / compute_s;
  auto [it, fresh] = rates_.try_emplace(site, rate);
  if (!fresh) it->second = alpha_ * rate + (1 - alpha_) * it->second;
}

}  // namespace longhaul::outer
