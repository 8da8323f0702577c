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

AutoInnerSteps choose_auto_inner_steps(Balance balance, double target, int64_t min_h, int64_t max_h,
                                       int64_t previous, const std::set<std::string>& sites,
                                       const std::map<std::string, SiteSpeed>& speeds) {
  LH_CHECK(target > 0 && target < 1 && min_h >= 1 && max_h >= min_h, "auto H: target ", target,
           " range [", min_h, ", ", max_h, "]");
  AutoInnerSteps out;
  out.h = std::clamp(previous, min_h, max_h);
  out.inputs = nlohmann::json::object();
  double r_max = 0;
  for (const auto& id : sites) {
    auto it = speeds.find(id);
    if (it == speeds.end() || !(it->second.steps_per_s > 0) || !(it->second.comm_s() > 0)) return out;
    r_max = std::max(r_max, it->second.steps_per_s);
  }
  if (sites.empty()) return out;
  double bound = 0;
  for (const auto& id : sites) {
    const SiteSpeed& s = speeds.at(id);
    const double r = balance == Balance::kEqualTime ? r_max : s.steps_per_s;
    bound = std::max(bound, s.comm_s() * r * (1 - target) / target);
    out.inputs[id] = {{"steps_per_s", s.steps_per_s}, {"comm_s", s.comm_s()}};
  }
  out.inputs["bound"] = bound;
  const double h = std::ceil(std::min(bound, static_cast<double>(max_h)));
  out.h = std::clamp(static_cast<int64_t>(h), min_h, max_h);
  out.measured = true;
  return out;
}

std::optional<double> expected_round_s(const std::map<std::string, int64_t>& plan,
                                       const std::map<std::string, SiteSpeed>& speeds) {
  double worst = 0;
  for (const auto& [id, h] : plan) {
    auto it = speeds.find(id);
    if (it == speeds.end() || !(it->second.steps_per_s > 0) || it->second.overhead_s < 0) return std::nullopt;
    worst = std::max(worst, it->second.overhead_s + static_cast<double>(h) / it->second.steps_per_s);
  }
  if (plan.empty()) return std::nullopt;
  return worst;
}

}  // namespace longhaul::outer
