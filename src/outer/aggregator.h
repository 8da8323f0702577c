// Aggregation of one round's pseudo-gradients at the coordinator.
//
//   mean (default):  Δ̄ = Σ_k w_k Δ_k / Σ_k w_k,  w_k = tokens site k trained this round.
//                    Memory: ONE fp32 accumulator (4N bytes), independent of the number of
//                    sites; uploads are folded into it straight from their payloads (no
//                    decoded copy), and Δ̄ is finished in place in it (issue 13 §1).
//                    `weighting` (outer.weighting) chooses w_k and what is averaged:
//                      tokens:     w_k = tokens (the default, as above);
//                      uniform:    w_k = 1 (every accepted site counts once);
//                      normalized: FedNova (Wang et al. 2020, arXiv 2007.07481): each Δ_k is
//                                  divided by its own inner steps H_k and the mean is rescaled
//                                  by the weighted mean H: Δ̄ = (Σ w_k Δ_k/H_k / W)·(Σ w_k H_k / W),
//                                  W = Σ w_k, w_k = tokens. Sites that ran more steps do not
//                                  pull θ toward their own objective (equal_time rounds).
//                    Arithmetic: acc[i] += float(c_k)·Δ_k[i] in fp32 (product rounded, then
//                    added: transport::decode_accumulate), c_k = w_k (normalized: w_k/H_k), in
//                    acceptance order; Δ̄[i] = float(acc[i] / D) in fp64, D = W (normalized:
//                    W·W / Σ w_k H_k). The same acceptances in the same order give the same
//                    bits (a replay of the round is exact).
//   trimmed_mean:    per coordinate, drop the `trim` largest and `trim` smallest of the K
//                    accepted values and average the rest (unweighted: each site counts once);
//                    with K <= 2·trim, the coordinate-wise median.
//   median:          per coordinate, the median of the K accepted values (unweighted; the mean
//                    of the two middle values for even K).
//   The robust modes keep every accepted upload until the round closes: memory K × 4N bytes
//   more (K accepted sites, N parameters), and finish() sorts K values per coordinate.
//
// Two ways in:
//  * streaming (the coordinator): scan the payload (transport::decode_scan: norm and
//    finiteness, chunk by chunk), admit() it by the rules below, then accept() it with a fold
//    that decodes it into the given vector (transport::decode_accumulate);
//  * add_scratch(): a decoded vector in scratch() (allocated on first use: 4N more), validated
//    and accumulated with the same arithmetic (tests, tools).
//
// Rejection (the upload never touches the aggregate; the reason is returned for the log):
//  * any non-finite element; weight not finite or <= 0;
//  * L2 norm above `max_update_ratio` × ‖θ_r‖ (set by begin_round): an absolute reference that
//    exists from the very first upload of the run;
//  * L2 norm above `max_norm_ratio` × the reference median: the median of the norms accepted in
//    this round so far together with those accepted in the previous round with accepted
//    uploads. Streaming aggregation cannot wait for every norm (that would cost K × model
//    memory in mean mode), and Δ norms change slowly from round to round.
// Honest norms can grow legitimately (a live change of H or of the learning rate): when a round
// closes with nothing accepted but at least `quorum` uploads refused by the median rule alone,
// their norms become the reference of the next round, so the filter never freezes.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace longhaul::outer {

enum class AggregationKind { kMean, kTrimmedMean, kMedian };
enum class Weighting { kTokens, kUniform, kNormalized };
// "tokens" | "uniform" | "normalized"; UserError otherwise.
Weighting parse_weighting(const std::string& s);
std::string to_string(Weighting w);
// "mean" | "trimmed_mean" | "median"; UserError otherwise.
AggregationKind parse_aggregation(const std::string& s);
std::string to_string(AggregationKind k);

struct AggregatorOptions {
  AggregationKind kind = AggregationKind::kMean;
  int trim = 1;                   // trimmed_mean: values dropped at each end per coordinate
  double max_norm_ratio = 10;     // > 1: norm cap relative to the median of accepted norms
  double max_update_ratio = 10;   // > 0: norm cap relative to ‖θ_r‖
  Weighting weighting = Weighting::kTokens;  // mean mode only; robust modes count sites once
  // A site's upload for round r that arrives after r closed counts in the round open then,
  // s = (that round − r) rounds stale, with its weight multiplied by stale_weight^s: a
  // staleness-discounted weight (as in asynchronous FL, e.g. FedAsync, Xie et al. 2019,
  // arXiv 1903.03934, whose polynomial rule (1 + s)^-1 gives the default 0.5 at s = 1);
  // 0 = drop late uploads. Robust modes ignore weights: there a stale upload counts fully.
  double stale_weight = 0.5;
};

class Aggregator {
 public:
  Aggregator(int64_t numel, AggregatorOptions options);

  // theta_norm: ‖θ_r‖ of the round's starting point; quorum: uploads that may reset the median
  // reference (see above), normally the round's min_sites.
  void begin_round(double theta_norm, int quorum);

  // Judges an upload of `weight` (tokens) from `steps` inner steps (>= 1; used by the
  // normalized weighting) whose decoded values have L2 norm `norm` (first_non_finite >= 0:
  // the index of a non-finite value, `bad` its value). Returns the rejection reason, or
  // nullopt: then the caller must accept() it. A refusal is remembered for the median rule.
  std::optional<std::string> admit(double weight, int64_t steps, double norm, int64_t first_non_finite = -1,
                                   float bad = 0);
  // out[i] += coef · Δ[i] for the upload being accepted (fp32 product, then fp32 add).
  using Fold = std::function<void(std::span<float> out, float coef)>;
  // Folds an admitted upload in (mean: into the accumulator with its coefficient; robust
  // modes: into a fresh zero vector with coef 1, kept until the round closes). A replay calls
  // this with the recorded weight, steps and norm and gets the same bits.
  void accept(double weight, int64_t steps, double norm, const Fold& fold);

  std::span<float> scratch();
  // Validates scratch() and aggregates it (admit + accept). Returns the rejection reason, or
  // nullopt when accepted. `norm_out` (if given) receives the L2 norm (NaN if non-finite).
  std::optional<std::string> add_scratch(double weight, double* norm_out = nullptr, int64_t steps = 1);
  // Δ̄, finished in place in the accumulator (mean) or in a result vector (robust modes);
  // valid until the next begin_round. Empty when nothing was accepted. Once per round.
  std::span<float> finish();
  // The same, copied into `mean`. Returns false (mean untouched) when nothing was accepted.
  bool finish(std::span<float> mean);
  // The divisor D of the mean (see above) for the uploads accepted so far.
  double divisor() const;

  int accepted() const { return static_cast<int>(round_norms_.size()); }
  double total_weight() const { return total_weight_; }
  // Reference median used for the next check (0 when none).
  double reference_median() const;
  // The norms that form the reference of the next round, for the coordinator checkpoint.
  const std::vector<double>& previous_norms() const { return previous_norms_; }
  void set_previous_norms(std::vector<double> n) { previous_norms_ = std::move(n); }
  const AggregatorOptions& options() const { return opt_; }

 private:
  AggregatorOptions opt_;
  int64_t numel_;
  std::vector<float> scratch_;              // add_scratch() only, allocated on first use
  std::vector<float> acc_;                  // mean: Σ c_k Δ_k (fp32, acceptance order); then Δ̄
  std::vector<std::vector<float>> kept_;    // robust modes: each accepted Δ_k
  std::vector<float> robust_out_;           // robust modes: Δ̄
  std::vector<double> round_norms_;         // accepted this round
  std::vector<double> median_refused_norms_;  // refused by the median rule alone this round
  std::vector<double> previous_norms_;
  double theta_norm_ = 0;
  int quorum_ = 1;
  double total_weight_ = 0;
  double step_weight_ = 0;  // Σ w_k H_k (normalized weighting)
};

}  // namespace longhaul::outer
