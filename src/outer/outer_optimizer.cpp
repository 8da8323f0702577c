#include "outer/outer_optimizer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace longhaul::outer {

OuterKind parse_outer_kind(const std::string& s) {
  if (s == "nesterov") return OuterKind::kNesterov;
  if (s == "sgdm") return OuterKind::kSgdm;
  if (s == "avg") return OuterKind::kAvg;
  throw UserError("outer optimizer '" + s + "': expected one of nesterov, sgdm, avg");
}

std::string to_string(OuterKind k) {
  switch (k) {
    case OuterKind::kNesterov: return "nesterov";
    case OuterKind::kSgdm: return "sgdm";
    case OuterKind::kAvg: return "avg";
  }
  return "?";
}

struct OuterOptimizer::Impl {
  torch::Tensor theta;     // [numel] fp32
  torch::Tensor momentum;  // undefined until the first step with momentum
};

namespace {
torch::Tensor flat_copy(std::span<const float> v) {
  return torch::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())},
                          torch::kFloat32)
      .clone();
}
}  // namespace

OuterOptimizer::OuterOptimizer(OuterOptimConfig cfg, std::span<const float> initial)
    : cfg_(cfg), impl_(std::make_unique<Impl>()) {
  if (cfg_.kind == OuterKind::kAvg) {
    cfg_.lr = 1.0;
    cfg_.momentum = 0.0;
  }
  LH_CHECK(cfg_.lr > 0, "outer lr = ", cfg_.lr);
  LH_CHECK(cfg_.momentum >= 0 && cfg_.momentum < 1, "outer momentum = ", cfg_.momentum);
  LH_CHECK(cfg_.warmup_rounds >= 0, "outer warmup_rounds = ", cfg_.warmup_rounds);
  LH_CHECK(cfg_.max_update_norm >= 0 && std::isfinite(cfg_.max_update_norm), "outer max_update_norm = ",
           cfg_.max_update_norm);
  LH_CHECK(cfg_.max_update_theta_ratio >= 0 && std::isfinite(cfg_.max_update_theta_ratio),
           "outer max_update_theta_ratio = ", cfg_.max_update_theta_ratio);
  if (cfg_.kind == OuterKind::kAvg) cfg_.warmup_rounds = 0, cfg_.max_update_norm = 0, cfg_.max_update_theta_ratio = 0;
  impl_->theta = flat_copy(initial);
}

OuterOptimizer::~OuterOptimizer() = default;

int64_t OuterOptimizer::numel() const { return impl_->theta.numel(); }

std::span<const float> OuterOptimizer::params() const {
  return {impl_->theta.data_ptr<float>(), static_cast<size_t>(impl_->theta.numel())};
}

double OuterOptimizer::next_lr() const {
  if (cfg_.warmup_rounds <= 1) return cfg_.lr;
  return cfg_.lr * std::min(1.0, static_cast<double>(steps_ + 1) / static_cast<double>(cfg_.warmup_rounds));
}

void OuterOptimizer::step(std::span<const float> mean_delta) {
  std::vector<float> d(mean_delta.begin(), mean_delta.end());
  step_in_place(d);
}

void OuterOptimizer::step_in_place(std::span<float> mean_delta) {
  LH_CHECK_EQ(static_cast<int64_t>(mean_delta.size()), numel());
  torch::NoGradGuard ng;
  torch::Tensor g = torch::from_blob(mean_delta.data(), {static_cast<int64_t>(mean_delta.size())}, torch::kFloat32);
  // ‖Δ̄‖₂ as torch's clip_grad_norm_ computes it for one fp32 tensor (an fp32 result).
  last_norm_ = last_clipped_ = g.norm().item<float>();
  double cap = cfg_.max_update_norm;
  if (cfg_.max_update_theta_ratio > 0) {
    const double rel = cfg_.max_update_theta_ratio * impl_->theta.norm().item<float>();
    cap = cap > 0 ? std::min(cap, rel) : rel;
  }
  last_cap_ = cap;
  if (cap > 0) {
    // clip_grad_norm_'s fp32 arithmetic, operation for operation: coef = c / (norm + 1e-6),
    // where torch computes scalar / tensor as reciprocal(tensor) * scalar; clamped to 1.
    const float denom = static_cast<float>(last_norm_) + 1e-6f;
    const float coef = (1.0f / denom) * static_cast<float>(cap);
    if (coef < 1.0f) {
      g.mul_(coef);
      last_clipped_ = g.norm().item<float>();
    }
  }
  // torch.optim.SGD (_single_tensor_sgd; dampening 0, no weight decay):
  //   buf = clone(g) on the first step, else buf.mul_(μ).add_(g, alpha=1)
  //   nesterov: g = g.add(buf, alpha=μ)   (here in place: the same kernel, g is ours)
  //   else:     g = buf
  //   θ.add_(g, alpha=−lr)
  const double lr = next_lr();
  torch::Tensor d = g;
  if (cfg_.momentum != 0) {
    if (!impl_->momentum.defined())
      impl_->momentum = g.clone();
    else
      impl_->momentum.mul_(cfg_.momentum).add_(g, 1.0);
    if (cfg_.kind == OuterKind::kNesterov)
      g.add_(impl_->momentum, cfg_.momentum);
    else
      d = impl_->momentum;
  }
  impl_->theta.add_(d, -1 * lr);
  ++steps_;
}

std::vector<float> OuterOptimizer::momentum_buffer() const {
  std::span<const float> v = momentum_view();
  return std::vector<float>(v.begin(), v.end());
}

std::span<const float> OuterOptimizer::momentum_view() const {
  const auto& buf = impl_->momentum;
  if (!buf.defined()) return {};
  LH_CHECK(buf.is_contiguous(), "momentum buffer is not contiguous");
  return {buf.data_ptr<float>(), static_cast<size_t>(buf.numel())};
}

void OuterOptimizer::restore(std::span<const float> params, std::span<const float> momentum,
                             int64_t steps) {
  torch::NoGradGuard ng;
  if (!params.empty()) {
    LH_CHECK_EQ(static_cast<int64_t>(params.size()), numel());
    impl_->theta.copy_(torch::from_blob(const_cast<float*>(params.data()), {numel()}, torch::kFloat32));
  }
  impl_->momentum = torch::Tensor();
  if (!momentum.empty()) {
    LH_CHECK_EQ(static_cast<int64_t>(momentum.size()), numel());
    impl_->momentum = flat_copy(momentum);
  }
  steps_ = steps;
}

}  // namespace longhaul::outer
