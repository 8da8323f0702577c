#include "outer/aggregator.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/error.h"
#include "outer/parallel_for.h"

namespace longhaul::outer {

AggregationKind parse_aggregation(const std::string& s) {
  if (s == "mean") return AggregationKind::kMean;
  if (s == "trimmed_mean") return AggregationKind::kTrimmedMean;
  if (s == "median") return AggregationKind::kMedian;
  throw UserError("aggregation '" + s + "': expected mean | trimmed_mean | median");
}

std::string to_string(AggregationKind k) {
  switch (k) {
    case AggregationKind::kMean: return "mean";
    case AggregationKind::kTrimmedMean: return "trimmed_mean";
    case AggregationKind::kMedian: return "median";
  }
  return "?";
}

Weighting parse_weighting(const std::string& s) {
  if (s == "tokens") return Weighting::kTokens;
  if (s == "uniform") return Weighting::kUniform;
  if (s == "normalized") return Weighting::kNormalized;
  throw UserError("weighting '" + s + "': expected tokens | uniform | normalized");
}

std::string to_string(Weighting w) {
  switch (w) {
    case Weighting::kTokens: return "tokens";
    case Weighting::kUniform: return "uniform";
    case Weighting::kNormalized: return "normalized";
  }
  return "?";
}

Aggregator::Aggregator(int64_t numel, AggregatorOptions options) : opt_(options), numel_(numel) {
  LH_CHECK(numel > 0 && opt_.max_norm_ratio > 1 && opt_.max_update_ratio > 0 && opt_.trim >= 0,
           "numel ", numel, " max_norm_ratio ", opt_.max_norm_ratio, " max_update_ratio ",
           opt_.max_update_ratio, " trim ", opt_.trim);
  if (opt_.kind == AggregationKind::kMean) acc_.assign(numel, 0.0f);
}

std::span<float> Aggregator::scratch() {
  if (scratch_.empty()) scratch_.resize(numel_);
  return scratch_;
}

void Aggregator::begin_round(double theta_norm, int quorum) {
  if (!round_norms_.empty()) {
    previous_norms_ = round_norms_;
  } else if (static_cast<int>(median_refused_norms_.size()) >= std::max(1, quorum)) {
    previous_norms_ = median_refused_norms_;  // honest norms grew: follow them (see header)
  }
  round_norms_.clear();
  median_refused_norms_.clear();
  kept_.clear();
  if (opt_.kind == AggregationKind::kMean) parallel_fill(std::span<float>(acc_), 0.0f);
  total_weight_ = 0;
  step_weight_ = 0;
  theta_norm_ = theta_norm;
  quorum_ = quorum;
}

double Aggregator::reference_median() const {
  std::vector<double> ref = round_norms_;
  ref.insert(ref.end(), previous_norms_.begin(), previous_norms_.end());
  if (ref.empty()) return 0;
  std::sort(ref.begin(), ref.end());
  size_t n = ref.size();
  return n % 2 ? ref[n / 2] : 0.5 * (ref[n / 2 - 1] + ref[n / 2]);
}

std::optional<std::string> Aggregator::admit(double weight, int64_t steps, double norm, int64_t first_non_finite,
                                             float bad) {
  std::ostringstream os;
  if (!std::isfinite(weight) || weight <= 0) {
    os << "weight " << weight << " is not a positive finite token count";
    return os.str();
  }
  if (steps < 1) {
    os << "inner steps " << steps << " < 1";
    return os.str();
  }
  if (first_non_finite >= 0) {
    os << "non-finite value " << bad << " at element " << first_non_finite;
    return os.str();
  }
  if (theta_norm_ > 0 && norm > opt_.max_update_ratio * theta_norm_) {
    os << "norm " << norm << " is above " << opt_.max_update_ratio << " x the norm of θ ("
       << theta_norm_ << ")";
    return os.str();
  }
  const double med = reference_median();
  if (med > 0 && norm > opt_.max_norm_ratio * med) {
    median_refused_norms_.push_back(norm);
    os << "norm " << norm << " is above " << opt_.max_norm_ratio << " x the median " << med;
    return os.str();
  }
  return std::nullopt;
}

void Aggregator::accept(double weight, int64_t steps, double norm, const Fold& fold) {
  if (opt_.weighting == Weighting::kUniform) weight = 1.0;
  if (opt_.kind == AggregationKind::kMean) {
    const double coef = opt_.weighting == Weighting::kNormalized ? weight / static_cast<double>(steps) : weight;
    fold(acc_, static_cast<float>(coef));
  } else {
    kept_.emplace_back(static_cast<size_t>(numel_), 0.0f);
    fold(kept_.back(), 1.0f);
  }
  total_weight_ += weight;
  step_weight_ += weight * static_cast<double>(steps);
  round_norms_.push_back(norm);
}

std::optional<std::string> Aggregator::add_scratch(double weight, double* norm_out, int64_t steps) {
  if (norm_out) *norm_out = std::nan("");
  std::span<const float> x = scratch();
  const NormScan scan = parallel_norm(x);
  if (norm_out && scan.first_non_finite < 0) *norm_out = scan.norm;
  const float bad = scan.first_non_finite >= 0 ? x[scan.first_non_finite] : 0.0f;
  if (auto why = admit(weight, steps, scan.norm, scan.first_non_finite, bad)) return why;
  accept(weight, steps, scan.norm, [&](std::span<float> out, float coef) { parallel_axpy(out, coef, x); });
  return std::nullopt;
}

double Aggregator::divisor() const {
  return opt_.weighting == Weighting::kNormalized ? total_weight_ * total_weight_ / step_weight_ : total_weight_;
}

std::span<float> Aggregator::finish() {
  if (round_norms_.empty()) return {};
  if (opt_.kind == AggregationKind::kMean) {
    parallel_div_inplace(acc_, divisor());
    return acc_;
  }
  std::span<float> mean;
  robust_out_.resize(static_cast<size_t>(numel_));
  mean = robust_out_;
  const size_t k = kept_.size();
  const size_t trim = opt_.kind == AggregationKind::kTrimmedMean && k > 2 * static_cast<size_t>(opt_.trim)
                          ? static_cast<size_t>(opt_.trim)
                          : 0;
  const bool median = opt_.kind == AggregationKind::kMedian || (opt_.trim > 0 && trim == 0);
  parallel_ranges(mean.size(), [&](size_t lo, size_t hi) {
    std::vector<float> v(k);
    for (size_t i = lo; i < hi; ++i) {
      for (size_t j = 0; j < k; ++j) v[j] = kept_[j][i];
      std::sort(v.begin(), v.end());
      if (median) {
        mean[i] = k % 2 ? v[k / 2] : static_cast<float>(0.5 * (static_cast<double>(v[k / 2 - 1]) + v[k / 2]));
      } else {
        double s = 0;
        for (size_t j = trim; j < k - trim; ++j) s += v[j];
        mean[i] = static_cast<float>(s / static_cast<double>(k - 2 * trim));
      }
    }
  });
  kept_.clear();  // Δ̄ is in robust_out_ now
  return mean;
}

bool Aggregator::finish(std::span<float> mean) {
  LH_CHECK_EQ(static_cast<int64_t>(mean.size()), numel_);
  std::span<const float> r = finish();
  if (r.empty()) return false;
  std::copy(r.begin(), r.end(), mean.begin());
  return true;
}

}  // namespace longhaul::outer
