#include "inner/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "common/error.h"

namespace longhaul::inner {

double lr_at(int64_t step, const InnerOptimConfig& cfg) {
  LH_CHECK(step >= 0, "step = ", step);
  return lr_at_position(static_cast<double>(step), cfg);
}

double lr_at_position(double step, const InnerOptimConfig& cfg) {
  LH_CHECK(step >= 0 && std::isfinite(step), "schedule position = ", step);
  if (step < static_cast<double>(cfg.warmup_steps))
    return cfg.lr * (step + 1) / static_cast<double>(cfg.warmup_steps + 1);
  if (step > static_cast<double>(cfg.decay_steps)) return cfg.min_lr;
  const double ratio = (step - static_cast<double>(cfg.warmup_steps)) /
                       static_cast<double>(cfg.decay_steps - cfg.warmup_steps);
  const double coeff = 0.5 * (1.0 + std::cos(std::numbers::pi * ratio));  // 1 -> 0
  return cfg.min_lr + coeff * (cfg.lr - cfg.min_lr);
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

}  // namespace longhaul::inner
