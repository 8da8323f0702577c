// nanoGPT's learning-rate schedule (train.py get_lr), step counted from 0:
//   step <  warmup_steps:            lr · (step + 1) / (warmup_steps + 1)        (linear warmup)
//   step >  decay_steps:             min_lr
//   otherwise: r = (step − warmup_steps) / (decay_steps − warmup_steps) ∈ [0, 1],
//              min_lr + 0.5 · (1 + cos(π · r)) · (lr − min_lr)                  (cosine decay)
// So lr_at(warmup_steps) = lr and lr_at(decay_steps) = min_lr, exactly as nanoGPT.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "inner/inner_optimizer.h"

namespace longhaul::inner {

// The learning rate for optimizer step `step` (>= 0). Same arithmetic as nanoGPT (doubles).
double lr_at(int64_t step, const InnerOptimConfig& cfg);
// The same schedule at a fractional position (>= 0) in steps: a DiLoCo site follows the run's
// progress (Trainer::follow_schedule), which need not fall on whole steps. Equal to lr_at at
// whole positions.
double lr_at_position(double position, const InnerOptimConfig& cfg);

// Sets lr on every parameter group of `opt`.
void set_lr(torch::optim::Optimizer& opt, double lr);

}  // namespace longhaul::inner
