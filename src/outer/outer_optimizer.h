// The outer optimizer of DiLoCo: θ ← OuterOpt(θ, Δ̄) where Δ̄ is the token-weighted mean
// pseudo-gradient Σ w_k (θ_r − θ_k) / Σ w_k. Sign: Δ̄ points from the sites' trained replicas
// back to θ_r, i.e. it is a gradient-like direction that the step DESCENDS (θ −= lr·…).
//
// θ is held as ONE flat fp32 tensor and the step is torch.optim.SGD's single-tensor update,
// op for op with the same ATen kernels (so bitwise torch's), done in place: Δ̄'s own storage
// takes the Nesterov term, so a step allocates nothing beyond the momentum's first buffer
// (issue 13 §1: θ, momentum and Δ̄ are the step's whole memory):
//   nesterov: buf = μ·buf + Δ̄ (first step: buf = Δ̄); θ −= lr·(Δ̄ + μ·buf)
//   sgdm:     buf = μ·buf + Δ̄ (first step: buf = Δ̄); θ −= lr·buf          (heavy ball)
//   avg:      θ −= 1·Δ̄  (FedAvg: θ becomes the weighted mean of the replicas)
//
// Stabilisers of the early outer steps (both before SGD sees Δ̄, so torch semantics stay):
//   warmup_rounds W: step t (0-based count of outer steps taken) uses lr·min(1, (t+1)/W) —
//     exactly torch's SGD with a LambdaLR(lambda t: min(1, (t+1)/W)) stepped after each step.
//   max_update_norm c > 0: Δ̄ ← Δ̄·min(1, c / (‖Δ̄‖₂ + 1e-6)) — exactly
//     torch.nn.utils.clip_grad_norm_(θ, c) on θ.grad = Δ̄ before the step.
//   max_update_theta_ratio ρ > 0: the same clip with c = ρ·‖θ‖₂ (θ before the step, fp32 norm),
//     or min(c, ρ·‖θ‖₂) when both are set. Self-scaling: no parameter units, so one default
//     carries over between model sizes, and it loosens as ‖θ‖ grows.
// avg ignores both (FedAvg's step is the mean itself).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace longhaul::outer {

enum class OuterKind { kNesterov, kSgdm, kAvg };

// "nesterov" | "sgdm" | "avg"; throws ConfigError-style UserError otherwise.
OuterKind parse_outer_kind(const std::string& s);
std::string to_string(OuterKind k);

struct OuterOptimConfig {
  OuterKind kind = OuterKind::kNesterov;
  double lr = 0.7;        // outer learning rate (avg: forced to 1)
  double momentum = 0.9;  // μ (avg: unused)
  int64_t warmup_rounds = 0;     // linear outer-lr warmup over this many outer steps (0, 1 = none)
  double max_update_norm = 0;    // cap on ‖Δ̄‖₂ before the step, in parameter units (0 = off)
  double max_update_theta_ratio = 0;  // cap on ‖Δ̄‖₂ / ‖θ‖₂ before the step (0 = off)
};

class OuterOptimizer {
 public:
  // θ starts as `initial` (numel = initial.size()).
  OuterOptimizer(OuterOptimConfig cfg, std::span<const float> initial);
  ~OuterOptimizer();
  OuterOptimizer(const OuterOptimizer&) = delete;
  OuterOptimizer& operator=(const OuterOptimizer&) = delete;

  // One outer step with pseudo-gradient Δ̄ (same length as θ). The in-place form consumes
  // mean_delta (its contents are undefined afterwards); the other copies it first.
  void step_in_place(std::span<float> mean_delta);
  void step(std::span<const float> mean_delta);

  // The lr the next step uses (warmup applied); the ‖Δ̄‖₂ of the last step before and after
  // the clip (equal when it did not bind). For the coordinator's metrics line.
  double next_lr() const;
  double last_delta_norm() const { return last_norm_; }
  double last_clipped_norm() const { return last_clipped_; }
  double last_cap() const { return last_cap_; }  // the clip the last step used (0: none)

  std::span<const float> params() const;  // θ, valid until the next step/load
  int64_t numel() const;
  int64_t steps_taken() const { return steps_; }
  const OuterOptimConfig& config() const { return cfg_; }

  // Momentum buffer (empty before the first step or for avg). For checkpoints.
  std::vector<float> momentum_buffer() const;
  // The same without a copy: valid until the next step/restore.
  std::span<const float> momentum_view() const;
  // Restores θ (empty: kept as it is), the momentum buffer (may be empty: no momentum yet) and
  // the step count.
  void restore(std::span<const float> params, std::span<const float> momentum, int64_t steps);

 private:
  struct Impl;
  OuterOptimConfig cfg_;
  std::unique_ptr<Impl> impl_;
  int64_t steps_ = 0;
  double last_norm_ = 0, last_clipped_ = 0, last_cap_ = 0;
};

}  // namespace longhaul::outer
