// Splits a site batch (in sequences) across workers — the devices of one process, or the
// processes of a multi-process site — in proportion to each worker's measured throughput.
//
// Contract:
//  * rate(i) is an exponential moving average of sequences/s that worker i achieved in the
//    steps it took part in (record()); before its first measurement a worker's rate is the
//    mean of the measured ones (or 1 when none is measured), so the first split is equal.
//  * split(total) returns counts that sum to `total`, proportional to the rates (largest
//    remainder rounding, ties to the lower index, so every caller with the same rates gets
//    the same split). Every worker gets at least `min_share` sequences while total allows it,
//    so a slow worker keeps being measured and can win back work if it speeds up.
//  * Micro-batches: a worker with share n and cap c runs ceil(n / c) micro-batches, so a slow
//    worker takes fewer micro-batches per accumulation cycle (micro_batches()).
#pragma once

#include <cstdint>
#include <vector>

namespace longhaul::inner {

struct BalancerOptions {
  // Weight of the newest measurement in the moving average, in (0, 1].
  double ema_alpha = 0.5;
  // Sequences every worker gets while the batch has at least that many per worker.
  int64_t min_share = 1;
  // Leading measurements per worker that are discarded (the first step pays one-time costs:
  // allocator warm-up, lazy initialisation, CUDA context and kernels).
  int64_t warmup = 1;
  // Chainable setters, LibTorch-options style.
  BalancerOptions& alpha(double a) { ema_alpha = a; return *this; }
  BalancerOptions& min(int64_t m) { min_share = m; return *this; }
  BalancerOptions& skip(int64_t w) { warmup = w; return *this; }
};

class ThroughputBalancer {
 public:
  // `workers` >= 1; throws InvariantError on bad options.
  ThroughputBalancer(int64_t workers, BalancerOptions options = {});

  int64_t workers() const { return static_cast<int64_t>(rates_.size()); }
  // Worker i processed `sequences` in `seconds` (wall time, > 0). Ignored when sequences == 0.
  void record(int64_t i, int64_t sequences, double seconds);
  // Replaces all rates (e.g. with rates gathered from every rank); 0 means "not measured".
  void set_rates(const std::vector<double>& rates);

  // Moving-average sequences/s of worker i; 0 when not yet measured.
  double measured_rate(int64_t i) const { return rates_.at(i); }
  const std::vector<double>& measured_rates() const { return rates_; }
  // The rates split() uses: measured ones, unmeasured replaced as described above.
  std::vector<double> effective_rates() const;

  std::vector<int64_t> split(int64_t total) const;

  // ceil(share / cap): micro-batches a worker with `share` sequences runs under `cap`.
  static int64_t micro_batches(int64_t share, int64_t cap);

 private:
  BalancerOptions options_;
  std::vector<double> rates_;
  std::vector<int64_t> seen_;  // measurements received per worker (warm-up included)
};

// Largest-remainder apportionment of `total` over `weights` (>= 0, not all 0 unless total is
// 0), with at least `min_each` per entry when total >= min_each * size. Deterministic.
std::vector<int64_t> proportional_split(int64_t total, const std::vector<double>& weights,
                                        int64_t min_each);

}  // namespace longhaul::inner
