// The outer optimizer of streaming DiLoCo (issue #11): one OuterOptimizer (outer_optimizer.h,
// torch.optim.SGD semantics) per fragment, over that fragment's slice of θ, with its own
// momentum slice and its own step count (warmup counts fragment p's outer steps). A fragment's
// step never touches another fragment's parameters or momentum. P = 1 is exactly one
// OuterOptimizer over all of θ (no copies).
//
// The clip (outer.max_update_norm = c) applies per fragment with c·sqrt(N_p / N) (N_p: the
// fragment's elements): a Δ̄ spread evenly over θ is clipped as the whole vector would be.
//
// Memory: P = 1: θ and momentum (8N bytes). P > 1: the fragments' θ slices and momentum (8N)
// plus the assembled θ master (4N); momentum_view() assembles momentum into 4N more on first
// use (checkpoints).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "outer/fragment_layout.h"
#include "outer/outer_optimizer.h"

namespace longhaul::outer {

class FragmentOuter {
 public:
  FragmentOuter(OuterOptimConfig cfg, FragmentLayout layout, std::span<const float> initial);
  int fragments() const { return layout_.size(); }

  // One outer step of fragment p with its pseudo-gradient slice (gather order, N_p elements).
  void step(int p, std::span<const float> mean_delta);
  void step_in_place(int p, std::span<float> mean_delta);  // consumes mean_delta
  double next_lr(int p) const { return opt_.at(p)->next_lr(); }
  double last_delta_norm(int p) const { return opt_.at(p)->last_delta_norm(); }
  double last_clipped_norm(int p) const { return opt_.at(p)->last_clipped_norm(); }
  double last_cap(int p) const { return opt_.at(p)->last_cap(); }
  // Fragment p's θ master slice (gather order), valid until the next step/restore.
  std::span<const float> params(int p) const { return opt_.at(p)->params(); }

  // All of θ master, valid until the next step/restore.
  std::span<const float> params() const;
  // All of the momentum (zeros where a fragment has none yet); empty while no fragment has any.
  std::span<const float> momentum_view() const;
  std::vector<int64_t> steps_taken() const;
  // Restores θ master (empty: θ is kept as it is, e.g. constructed from the checkpoint), the
  // momentum (empty: none) and each fragment's step count (size P; a fragment with 0 steps
  // gets no momentum, as before its first step).
  void restore(std::span<const float> params, std::span<const float> momentum, const std::vector<int64_t>& steps);

 private:
  FragmentLayout layout_;
  std::vector<std::unique_ptr<OuterOptimizer>> opt_;
  std::vector<float> master_;         // P > 1 only
  mutable std::vector<float> mom_;    // P > 1 only, assembled by momentum_view()
};

}  // namespace longhaul::outer
