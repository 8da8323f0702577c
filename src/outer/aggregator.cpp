#include "outer/aggregator.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/error.h"

namespace longhaul::outer {

Aggregator::Aggregator(int64_t numel, double max_norm_ratio)
    : max_norm_ratio_(max_norm_ratio), scratch_(numel), acc_(numel, 0.0) {
  LH_CHECK(numel > 0 && max_norm_ratio > 1, "numel ", numel, " ratio ", max_norm_ratio);
}

void Aggregator::begin_round() {
  if (!round_norms_.empty()) previous_norms_ = round_norms_;
  round_norms_.clear();
  std::fill(acc_.begin(), acc_.end(), 0.0);
  total_weight_ = 0;
}

double Aggregator::reference_median() const {
  std::vector<double> ref = round_norms_;
  ref.insert(ref.end(), previous_norms_.begin(), previous_norms_.end());
  if (ref.empty()) return 0;
  std::sort(ref.begin(), ref.end());
  size_t n = ref.size();
  return n % 2 ? ref[n / 2] : 0.5 * (ref[n / 2 - 1] + ref[n / 2]);
}

std::optional<std::string> Aggregator::add_scratch(double weight, double* norm_out) {
  if (norm_out) *norm_out = std::nan("");
  if (!std::isfinite(weight) || weight <= 0) {
    std::ostringstream os;
    os << "weight " << weight << " is not a positive finite token count";
    return os.str();
  }
  double sq = 0;
  for (size_t i = 0; i < scratch_.size(); ++i) {
    float v = scratch_[i];
    if (!std::isfinite(v)) {
      std::ostringstream os;
      os << "non-finite value " << v << " at element " << i;
      return os.str();
    }
    sq += static_cast<double>(v) * v;
  }
  double norm = std::sqrt(sq);
  if (norm_out) *norm_out = norm;
  double med = reference_median();
  if (med > 0 && norm > max_norm_ratio_ * med) {
    std::ostringstream os;
    os << "norm " << norm << " is above " << max_norm_ratio_ << " x the median " << med;
    return os.str();
  }
  for (size_t i = 0; i < scratch_.size(); ++i) acc_[i] += weight * scratch_[i];
  total_weight_ += weight;
  round_norms_.push_back(norm);
  return std::nullopt;
}

bool Aggregator::finish(std::span<float> mean) {
  LH_CHECK_EQ(mean.size(), acc_.size());
  if (round_norms_.empty()) return false;
  for (size_t i = 0; i < acc_.size(); ++i) mean[i] = static_cast<float>(acc_[i] / total_weight_);
  return true;
}

}  // namespace longhaul::outer
