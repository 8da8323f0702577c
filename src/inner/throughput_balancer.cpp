#include "inner/throughput_balancer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.h"

namespace longhaul::inner {

ThroughputBalancer::ThroughputBalancer(int64_t workers, BalancerOptions options)
    : options_(options),
      rates_(static_cast<size_t>(std::max<int64_t>(workers, 0)), 0.0),
      seen_(rates_.size(), 0) {
  LH_CHECK(workers >= 1, "workers = ", workers);
  LH_CHECK(options.ema_alpha > 0.0 && options.ema_alpha <= 1.0, "ema_alpha = ", options.ema_alpha);
  LH_CHECK(options.min_share >= 0, "min_share = ", options.min_share);
  LH_CHECK(options.warmup >= 0, "warmup = ", options.warmup);
}

void ThroughputBalancer::record(int64_t i, int64_t sequences, double seconds) {
  LH_CHECK(i >= 0 && i < workers(), "worker ", i, " of ", workers());
  if (sequences <= 0) return;
  LH_CHECK(seconds > 0.0 && std::isfinite(seconds), "seconds = ", seconds);
  if (seen_[static_cast<size_t>(i)]++ < options_.warmup) return;
  const double rate = static_cast<double>(sequences) / seconds;
  double& r = rates_[static_cast<size_t>(i)];
  r = (r == 0.0) ? rate : options_.ema_alpha * rate + (1.0 - options_.ema_alpha) * r;
}

void ThroughputBalancer::set_rates(const std::vector<double>& rates) {
  LH_CHECK_EQ(static_cast<int64_t>(rates.size()), workers());
  for (double r : rates) LH_CHECK(r >= 0.0 && std::isfinite(r), "rate = ", r);
  rates_ = rates;
}

std::vector<double> ThroughputBalancer::effective_rates() const {
  double sum = 0.0;
  int64_t measured = 0;
  for (double r : rates_) {
    if (r > 0.0) {
      sum += r;
      ++measured;
    }
  }
  const double fill = measured > 0 ? sum / static_cast<double>(measured) : 1.0;
  std::vector<double> out = rates_;
  for (double& r : out)
    if (r <= 0.0) r = fill;
  return out;
}

std::vector<int64_t> ThroughputBalancer::split(int64_t total) const {
  return proportional_split(total, effective_rates(), options_.min_share);
}

int64_t ThroughputBalancer::micro_batches(int64_t share, int64_t cap) {
  LH_CHECK(cap >= 1, "cap = ", cap);
  LH_CHECK(share >= 0, "share = ", share);
  return (share + cap - 1) / cap;
}

std::vector<int64_t> proportional_split(int64_t total, const std::vector<double>& weights,
                                        int64_t min_each) {
  const auto n = static_cast<int64_t>(weights.size());
  LH_CHECK(n >= 1, "no weights");
  LH_CHECK(total >= 0, "total = ", total);
  std::vector<int64_t> out(static_cast<size_t>(n), 0);
  if (total == 0) return out;
  const double wsum = std::accumulate(weights.begin(), weights.end(), 0.0);
  LH_CHECK(wsum > 0.0 && std::isfinite(wsum), "weights sum to ", wsum);
  // Largest remainder: floor of the exact shares, then one more each by descending remainder.
  std::vector<double> remainder(static_cast<size_t>(n));
  int64_t given = 0;
  for (int64_t i = 0; i < n; ++i) {
    LH_CHECK(weights[i] >= 0.0, "weight ", i, " = ", weights[i]);
    const double exact = static_cast<double>(total) * weights[i] / wsum;
    const auto whole = static_cast<int64_t>(std::floor(exact));
    out[i] = whole;
    given += whole;
    remainder[i] = exact - static_cast<double>(whole);
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return remainder[a] > remainder[b]; });
  for (int64_t k = 0; given < total; ++k, ++given) out[order[k % n]] += 1;
  // The minimum (only when the batch can give it to everyone): raise the short entries, one
  // sequence at a time from the largest entry (lowest index on ties).
  if (min_each > 0 && total >= min_each * n) {
    for (int64_t i = 0; i < n; ++i) {
      while (out[i] < min_each) {
        const auto donor = std::max_element(out.begin(), out.end()) - out.begin();
        LH_CHECK(out[donor] > min_each, "no donor for the minimum share");
        --out[donor];
        ++out[i];
      }
    }
  }
  return out;
}

}  // namespace longhaul::inner
