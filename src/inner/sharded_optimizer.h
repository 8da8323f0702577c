// ZeRO stage 1 inside a multi-process site (train.shard_optimizer = true): each of the W ranks
// keeps the AdamW state of 1/W of the parameters.
//
// The parameters, in unique_parameters() order, form one flat fp32 vector of N elements,
// padded to W * S with S = ceil(N / W); rank r owns [r * S, min(N, (r + 1) * S)). One step,
// after every rank has its LOCAL gradient in the model's .grad (DeviceGroup with
// reduce_gradients = false):
//   1. reduce-scatter  the flat local gradients -> this rank's S summed gradient elements;
//   2. clip            global L2 norm = sqrt(Σ over ranks of Σ shard²) (all_gather of a double),
//                      scaled by max_norm / (norm + 1e-6) when that is < 1 (PyTorch's rule);
//   3. step            torch::optim::AdamW over this rank's "pieces": one fp32 tensor per
//                      (parameter ∩ shard) segment, in nanoGPT's two groups (weight decay on
//                      pieces of dim >= 2 parameters); the pieces take the parameters' current
//                      values first, so a round boundary's θ reset needs no extra call;
//   4. all-gather      every rank's stepped pieces -> every rank's full parameters.
// AdamW is elementwise, so stepping pieces equals stepping whole parameters up to the order of
// the gradient sum (tested against an unsharded site to 1e-5).
// Memory per rank: exp_avg + exp_avg_sq = 8 S bytes (vs 8 N unsharded) + the pieces, 4 S.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "inner/inner_optimizer.h"

namespace longhaul::inner {

class SiteProcessGroup;

// Which part of the flat parameter vector this rank's optimizer state covers.
struct ShardLayout {
  int64_t elements = 0;  // N: parameters in the model (unique tensors)
  int world_size = 1;    // W
  int rank = 0;          // r
  int64_t shard = 0;     // S = ceil(N / W): elements per rank, the last one padded

  static ShardLayout make(int64_t elements, int world_size, int rank);
  int64_t begin() const { return std::min(elements, int64_t(rank) * shard); }
  int64_t end() const { return std::min(elements, int64_t(rank + 1) * shard); }
  // {"elements", "world_size", "rank", "shard"}: recorded in checkpoints.
  nlohmann::json to_json() const;
  bool operator==(const ShardLayout&) const = default;
};

class ShardedAdamW {
 public:
  // `model` and `pg` must outlive this. Validates cfg (ConfigError).
  ShardedAdamW(torch::nn::Module& model, const InnerOptimConfig& cfg, SiteProcessGroup& pg);

  // Steps 1-4 above; `grad_clip` 0 disables clipping. Returns the global gradient norm before
  // clipping. Every rank calls it at the same step (collectives).
  double step(double grad_clip);

  const ShardLayout& layout() const { return layout_; }
  // The AdamW over this rank's pieces: what the checkpoint saves and loads, and what
  // set_lr (inner/lr_schedule.h) sets the learning rate of.
  torch::optim::AdamW& adamw() { return *adamw_; }
  // Bytes of AdamW state this rank holds (exp_avg + exp_avg_sq; 0 before the first step).
  int64_t state_bytes() const;

 private:
  struct Piece {
    size_t param = 0;      // index into params_
    int64_t offset = 0;    // first element within the parameter (flattened)
    int64_t flat = 0;      // first element within the flat vector
    torch::Tensor value;   // [len] fp32 on the comm device, requires_grad (AdamW's "param")
  };
  torch::nn::Module& model_;
  SiteProcessGroup& pg_;
  std::vector<torch::Tensor> params_;  // unique parameters, flat order
  std::vector<int64_t> offsets_;       // flat offset of each parameter
  ShardLayout layout_;
  std::vector<Piece> pieces_;
  std::unique_ptr<torch::optim::AdamW> adamw_;
};

// Bytes of exp_avg + exp_avg_sq (and max_exp_avg_sq) an AdamW holds: the optimizer memory the
// tests compare between a sharded and an unsharded site.
int64_t adamw_state_bytes(const torch::optim::AdamW& opt);

}  // namespace longhaul::inner
