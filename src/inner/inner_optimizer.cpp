#include "inner/inner_optimizer.h"

#include <cmath>

#include "common/error.h"

namespace longhaul::inner {

void InnerOptimConfig::validate() const {
  auto bad = [](const char* field, auto v, const char* expected) {
    return ConfigError(
        detail::concat("optimizer config: ", field, " = ", v, ", expected ", expected));
  };
  if (!(lr > 0 && std::isfinite(lr))) throw bad("lr", lr, "a finite number > 0");
  if (!(min_lr >= 0 && min_lr <= lr)) throw bad("min_lr", min_lr, "a number in [0, lr]");
  if (!(beta1 >= 0 && beta1 < 1)) throw bad("beta1", beta1, "a number in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) throw bad("beta2", beta2, "a number in [0, 1)");
  if (!(eps > 0 && std::isfinite(eps))) throw bad("eps", eps, "a finite number > 0");
  if (!(weight_decay >= 0 && std::isfinite(weight_decay)))
    throw bad("weight_decay", weight_decay, "a finite number >= 0");
  if (warmup_steps < 0) throw bad("warmup_steps", warmup_steps, "an integer >= 0");
  if (decay_steps <= warmup_steps)
    throw ConfigError(detail::concat("optimizer config: decay_steps = ", decay_steps,
                                     " must be > warmup_steps = ", warmup_steps));
  if (!(grad_clip >= 0 && std::isfinite(grad_clip)))
    throw bad("grad_clip", grad_clip, "a finite number >= 0 (0 disables)");
}

std::unique_ptr<torch::optim::AdamW> make_inner_optimizer(Gpt& model, const InnerOptimConfig& cfg) {
  cfg.validate();
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : model->parameters(/*recurse=*/true))
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  return make_adamw_groups(std::move(decay), std::move(no_decay), cfg);
}

std::unique_ptr<torch::optim::AdamW> make_adamw_groups(std::vector<torch::Tensor> decay,
                                                       std::vector<torch::Tensor> no_decay,
                                                       const InnerOptimConfig& cfg) {
  auto options = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(cfg.lr)
                                                            .betas({cfg.beta1, cfg.beta2})
                                                            .eps(cfg.eps)
                                                            .weight_decay(wd)
                                                            .amsgrad(false));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, options(cfg.weight_decay));
  groups.emplace_back(no_decay, options(0.0));
  return std::make_unique<torch::optim::AdamW>(std::move(groups), *options(cfg.weight_decay));
}

double clip_grad_norm(torch::nn::Module& m, double max_norm) {
  auto params = m.parameters(/*recurse=*/true);
  if (max_norm > 0) return torch::nn::utils::clip_grad_norm_(params, max_norm);
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().detach().norm(2.0));
  if (norms.empty()) return 0.0;
  return torch::stack(norms).norm(2.0).item<double>();
}

}  // namespace longhaul::inner
