#include "outer/fragment_outer.h"

#include <cmath>

#include "common/error.h"

namespace longhaul::outer {

FragmentOuter::FragmentOuter(OuterOptimConfig cfg, FragmentLayout layout, std::span<const float> initial)
    : layout_(std::move(layout)) {
  LH_CHECK(initial.size() == layout_.total_elements(), "θ has ", initial.size(), " elements, the layout ",
           layout_.total_elements());
  const int P = layout_.size();
  if (P == 1) {
    opt_.push_back(std::make_unique<OuterOptimizer>(cfg, initial));
    return;
  }
  master_.assign(initial.begin(), initial.end());
  const double n = static_cast<double>(layout_.total_elements());
  for (int p = 0; p < P; ++p) {
    OuterOptimConfig c = cfg;
    c.max_update_norm = cfg.max_update_norm * std::sqrt(static_cast<double>(layout_.fragment(p).numel) / n);
    opt_.push_back(std::make_unique<OuterOptimizer>(c, layout_.gather(p, initial)));
  }
}

void FragmentOuter::step(int p, std::span<const float> mean_delta) {
  opt_.at(p)->step(mean_delta);
  if (fragments() > 1) layout_.scatter(p, opt_[p]->params(), master_);
}

void FragmentOuter::step_in_place(int p, std::span<float> mean_delta) {
  opt_.at(p)->step_in_place(mean_delta);
  if (fragments() > 1) layout_.scatter(p, opt_[p]->params(), master_);
}

std::span<const float> FragmentOuter::params() const {
  return fragments() == 1 ? opt_[0]->params() : std::span<const float>(master_);
}

std::span<const float> FragmentOuter::momentum_view() const {
  if (fragments() == 1) return opt_[0]->momentum_view();
  bool any = false;
  for (const auto& o : opt_) any |= !o->momentum_view().empty();
  if (!any) return {};
  mom_.assign(layout_.total_elements(), 0.f);
  for (int p = 0; p < fragments(); ++p)
    if (auto m = opt_[p]->momentum_view(); !m.empty()) layout_.scatter(p, m, mom_);
  return mom_;
}

std::vector<int64_t> FragmentOuter::steps_taken() const {
  std::vector<int64_t> s;
  for (const auto& o : opt_) s.push_back(o->steps_taken());
  return s;
}

void FragmentOuter::restore(std::span<const float> params, std::span<const float> momentum,
                            const std::vector<int64_t>& steps) {
  LH_CHECK(static_cast<int>(steps.size()) == fragments(), "restore: ", steps.size(), " step counts for ",
           fragments(), " fragments");
  if (fragments() == 1) return opt_[0]->restore(params, momentum, steps[0]);
  if (!params.empty()) {
    LH_CHECK(params.size() == layout_.total_elements(), "restore: θ of ", params.size());
    master_.assign(params.begin(), params.end());
  }
  for (int p = 0; p < fragments(); ++p) {
    const std::vector<float> m = momentum.empty() || steps[p] == 0 ? std::vector<float>{} : layout_.gather(p, momentum);
    opt_[p]->restore(params.empty() ? std::vector<float>{} : layout_.gather(p, params), m, steps[p]);
  }
}

}  // namespace longhaul::outer
