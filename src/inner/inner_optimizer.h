// The site's inner optimizer: torch::optim::AdamW with nanoGPT's two parameter groups
// (configure_optimizers): weight decay on every parameter with dim >= 2 (Linear weights and both
// embeddings), none on biases and LayerNorm weights. Plus gradient-norm clipping.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "inner/gpt.h"

namespace longhaul::inner {

struct InnerOptimConfig {
  double lr = 6e-4;            // peak learning rate (after warmup)
  double min_lr = 6e-5;        // floor of the cosine decay, in [0, lr]
  double beta1 = 0.9;          // AdamW first-moment decay, in [0, 1)
  double beta2 = 0.95;         // AdamW second-moment decay, in [0, 1)
  double eps = 1e-8;           // AdamW denominator epsilon, > 0
  double weight_decay = 0.1;   // decoupled weight decay on dim >= 2 parameters, >= 0
  int64_t warmup_steps = 100;  // linear warmup length, steps >= 0
  int64_t decay_steps =
      5000;  // step at which the cosine reaches min_lr (nanoGPT lr_decay_iters), > warmup_steps
  double grad_clip = 1.0;  // max global L2 norm of the gradient; 0 disables clipping

  // Throws ConfigError naming the field, its value and what was expected.
  void validate() const;
};

// Validates cfg. Group 0: dim >= 2 (weight_decay = cfg.weight_decay); group 1: the rest
// (weight_decay = 0). Both with lr = cfg.lr (call set_lr(lr_at(step)) before each step).
std::unique_ptr<torch::optim::AdamW> make_inner_optimizer(Gpt& model, const InnerOptimConfig& cfg);
// The same two groups from tensors the caller chose (ShardedAdamW: its shard's pieces): group 0
// `decay` with cfg.weight_decay, group 1 `no_decay` with 0, both at cfg.lr.
std::unique_ptr<torch::optim::AdamW> make_adamw_groups(std::vector<torch::Tensor> decay,
                                                       std::vector<torch::Tensor> no_decay,
                                                       const InnerOptimConfig& cfg);

// torch::nn::utils::clip_grad_norm_ over m's parameters when max_norm > 0 (same arithmetic as
// PyTorch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is < 1).
// Returns the global L2 norm of the gradients before clipping.
double clip_grad_norm(torch::nn::Module& m, double max_norm);

}  // namespace longhaul::inner
