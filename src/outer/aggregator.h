// Streaming aggregation of one round's pseudo-gradients at the coordinator:
//   Δ̄ = Σ_k w_k Δ_k / Σ_k w_k,   w_k = tokens site k trained this round.
// Memory is O(model), independent of the number of sites: one accumulator and ONE scratch
// vector, reused for every upload. The caller decodes an upload into scratch() (the codec
// checks the manifest hash while decoding), then calls add_scratch(), which validates and
// accumulates it.
//
// Rejection (the upload never touches the accumulator; the reason is returned for the log):
//  * any non-finite element;
//  * weight not finite or <= 0;
//  * L2 norm above `max_norm_ratio` × the reference median.
// The reference median, with streaming accumulation, is the median of the norms ALREADY
// accepted in this round together with those accepted in the previous round (kept across
// begin_round). The first upload of the run has no reference and is only checked for
// finiteness. We chose this over holding uploads back until every norm is known because that
// would cost O(sites × model) memory (or a second download), which the design forbids; the
// previous round's norms are a good scale since Δ norms change slowly from round to round.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace longhaul::outer {

class Aggregator {
 public:
  // numel: length of θ. max_norm_ratio > 1 (e.g. 10).
  Aggregator(int64_t numel, double max_norm_ratio);

  void begin_round();
  std::span<float> scratch() { return scratch_; }
  // Validates scratch() and accumulates weight·scratch(). Returns the rejection reason, or
  // nullopt when accepted. `norm_out` (if given) receives the L2 norm (NaN if non-finite).
  std::optional<std::string> add_scratch(double weight, double* norm_out = nullptr);
  // Writes Δ̄ into mean. Returns false (mean untouched) when nothing was accepted.
  bool finish(std::span<float> mean);

  int accepted() const { return static_cast<int>(round_norms_.size()); }
  double total_weight() const { return total_weight_; }
  // Reference median used for the next check (0 when none).
  double reference_median() const;
  // The previous round's accepted norms, for the coordinator checkpoint.
  const std::vector<double>& previous_norms() const { return previous_norms_; }
  void set_previous_norms(std::vector<double> n) { previous_norms_ = std::move(n); }

 private:
  double max_norm_ratio_;
  std::vector<float> scratch_;
  std::vector<double> acc_;  // Σ w_k Δ_k, fp64 so the order of arrival hardly matters
  std::vector<double> round_norms_;
  std::vector<double> previous_norms_;
  double total_weight_ = 0;
};

}  // namespace longhaul::outer
