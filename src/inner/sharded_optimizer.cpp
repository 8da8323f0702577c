#include "inner/sharded_optimizer.h"

#include <cmath>
#include <unordered_set>

#include "common/error.h"
#include "inner/inner_optimizer.h"
#include "inner/process_group.h"

namespace longhaul::inner {

ShardLayout ShardLayout::make(int64_t elements, int world_size, int rank) {
  LH_CHECK(elements >= 0 && world_size >= 1 && rank >= 0 && rank < world_size, "shard layout: ",
           elements, " elements, rank ", rank, " of ", world_size);
  ShardLayout l;
  l.elements = elements;
  l.world_size = world_size;
  l.rank = rank;
  l.shard = (elements + world_size - 1) / world_size;
  return l;
}

nlohmann::json ShardLayout::to_json() const {
  return {{"elements", elements}, {"world_size", world_size}, {"rank", rank}, {"shard", shard}};
}

int64_t adamw_state_bytes(const torch::optim::AdamW& opt) {
  int64_t bytes = 0;
  auto add = [&](const torch::Tensor& t) {
    if (t.defined()) bytes += t.numel() * static_cast<int64_t>(t.element_size());
  };
  for (const auto& [key, state] : opt.state()) {
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*state);
    add(s.exp_avg());
    add(s.exp_avg_sq());
    add(s.max_exp_avg_sq());
  }
  return bytes;
}

ShardedAdamW::ShardedAdamW(torch::nn::Module& model, const InnerOptimConfig& cfg, SiteProcessGroup& pg)
    : model_(model), pg_(pg) {
  cfg.validate();
  std::unordered_set<const void*> seen;
  int64_t n = 0;
  for (auto& p : model_.parameters(/*recurse=*/true)) {
    if (!seen.insert(p.unsafeGetTensorImpl()).second) continue;  // tied weights once
    params_.push_back(p);
    offsets_.push_back(n);
    n += p.numel();
  }
  layout_ = ShardLayout::make(n, pg_.world_size(), pg_.rank());
  const auto on = torch::TensorOptions().dtype(torch::kFloat32).device(pg_.comm_device());
  std::vector<torch::Tensor> decay, no_decay;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t a = std::max(offsets_[i], layout_.begin());
    const int64_t b = std::min(offsets_[i] + params_[i].numel(), layout_.end());
    if (a >= b) continue;
    Piece piece;
    piece.param = i;
    piece.offset = a - offsets_[i];
    piece.flat = a;
    piece.value = torch::zeros({b - a}, on.requires_grad(true));
    (params_[i].dim() >= 2 ? decay : no_decay).push_back(piece.value);
    pieces_.push_back(std::move(piece));
  }
  // The same two groups as make_inner_optimizer (group 0 decays), so set_lr and checkpoints
  // see the same structure.
  adamw_ = make_adamw_groups(std::move(decay), std::move(no_decay), cfg);
}

int64_t ShardedAdamW::state_bytes() const { return adamw_state_bytes(*adamw_); }

double ShardedAdamW::step(double grad_clip) {
  torch::NoGradGuard no_grad;
  const int W = layout_.world_size;
  const int64_t S = layout_.shard;
  const auto on = torch::TensorOptions().dtype(torch::kFloat32).device(pg_.comm_device());

  // 1. Reduce-scatter: [W * S] local gradients (zero padding) -> [S] summed over ranks.
  torch::Tensor grad_shard = torch::empty({S}, on);
  {
    torch::Tensor flat = torch::zeros({int64_t(W) * S}, on);
    for (size_t i = 0; i < params_.size(); ++i) {
      const auto& g = params_[i].grad();
      if (g.defined()) flat.narrow(0, offsets_[i], g.numel()).copy_(g.reshape({-1}));
    }
    pg_.reduce_scatter_sum(flat, grad_shard);
  }  // the [W * S] buffer is freed here

  // 2. Global norm over every rank's shard (fp64 partial sums), PyTorch's clip rule.
  const double local_sq = grad_shard.to(torch::kFloat64).square().sum().item<double>();
  double total_sq = 0;
  for (double v : pg_.all_gather(local_sq)) total_sq += v;
  const double norm = std::sqrt(total_sq);
  if (grad_clip > 0) {
    const double coef = grad_clip / (norm + 1e-6);
    if (coef < 1.0) grad_shard.mul_(coef);
  }

  // 3. AdamW on this rank's pieces, starting from the parameters' current values.
  const int64_t begin = layout_.begin();
  for (auto& piece : pieces_) {
    const auto& p = params_[piece.param];
    const int64_t len = piece.value.numel();
    piece.value.detach().copy_(p.detach().reshape({-1}).narrow(0, piece.offset, len));
    piece.value.mutable_grad() = grad_shard.narrow(0, piece.flat - begin, len);
  }
  adamw_->step();

  // 4. All-gather the stepped shards into every rank's parameters.
  torch::Tensor mine = torch::zeros({S}, on);
  for (auto& piece : pieces_) {
    mine.narrow(0, piece.flat - begin, piece.value.numel()).copy_(piece.value.detach());
    piece.value.mutable_grad() = torch::Tensor();  // the gradient shard is freed with grad_shard
  }
  torch::Tensor all = torch::empty({int64_t(W) * S}, on);
  pg_.all_gather_into(mine, all);
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    p.detach().copy_(all.narrow(0, offsets_[i], p.numel()).view(p.sizes()));
  }
  return norm;
}

}  // namespace longhaul::inner
