#include "inner/gpt.h"

#include <cmath>
#include <string>

#include "common/error.h"

namespace longhaul::inner {

namespace F = torch::nn::functional;

namespace {
// Dropout that costs nothing (no dispatch) when p = 0, the default, or in eval mode.
torch::Tensor maybe_dropout(const torch::Tensor& x, double p, bool training) {
  return p > 0.0 && training ? F::dropout(x, F::DropoutFuncOptions().p(p).training(true)) : x;
}
}  // namespace

LayerNormImpl::LayerNormImpl(int64_t ndim, bool has_bias) {
  weight = register_parameter("weight", torch::ones({ndim}));
  if (has_bias) bias = register_parameter("bias", torch::zeros({ndim}));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {weight.size(0)}, weight, bias, /*eps=*/1e-5);
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const GptConfig& cfg)
    : n_head_(cfg.n_head), n_embd_(cfg.n_embd), dropout_(cfg.dropout) {
  c_attn = register_module(
      "c_attn",
      torch::nn::Linear(torch::nn::LinearOptions(cfg.n_embd, 3 * cfg.n_embd).bias(cfg.bias)));
  c_proj = register_module(
      "c_proj", torch::nn::Linear(torch::nn::LinearOptions(cfg.n_embd, cfg.n_embd).bias(cfg.bias)));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), hs = C / n_head_;
  auto qkv = c_attn(x).split(n_embd_, /*dim=*/2);             // 3 x [B, T, C]
  auto q = qkv[0].view({B, T, n_head_, hs}).transpose(1, 2);  // [B, nh, T, hs]
  auto k = qkv[1].view({B, T, n_head_, hs}).transpose(1, 2);
  auto v = qkv[2].view({B, T, n_head_, hs}).transpose(1, 2);
  auto y =
      torch::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, is_training() ? dropout_ : 0.0,
                                          /*is_causal=*/true);  // [B, nh, T, hs]
  y = y.transpose(1, 2).contiguous().view({B, T, C});
  return maybe_dropout(c_proj(y), dropout_, is_training());
}

MlpImpl::MlpImpl(const GptConfig& cfg) : dropout_(cfg.dropout) {
  c_fc = register_module(
      "c_fc",
      torch::nn::Linear(torch::nn::LinearOptions(cfg.n_embd, 4 * cfg.n_embd).bias(cfg.bias)));
  c_proj = register_module(
      "c_proj",
      torch::nn::Linear(torch::nn::LinearOptions(4 * cfg.n_embd, cfg.n_embd).bias(cfg.bias)));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  auto h = torch::gelu(c_fc(x), "none");  // exact erf GELU, as nn.GELU()
  return maybe_dropout(c_proj(h), dropout_, is_training());
}

BlockImpl::BlockImpl(const GptConfig& cfg) {
  ln_1 = register_module("ln_1", LayerNorm(cfg.n_embd, cfg.bias));
  attn = register_module("attn", CausalSelfAttention(cfg));
  ln_2 = register_module("ln_2", LayerNorm(cfg.n_embd, cfg.bias));
  mlp = register_module("mlp", Mlp(cfg));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x) {
  auto y = x + attn(ln_1(x));
  return y + mlp(ln_2(y));
}

TransformerImpl::TransformerImpl(const GptConfig& cfg) {
  wte = register_module("wte", torch::nn::Embedding(cfg.vocab_size, cfg.n_embd));
  wpe = register_module("wpe", torch::nn::Embedding(cfg.block_size, cfg.n_embd));
  h = register_module("h", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.n_layer; ++i) h->push_back(Block(cfg));
  ln_f = register_module("ln_f", LayerNorm(cfg.n_embd, cfg.bias));
}

GptImpl::GptImpl(const GptConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  transformer = register_module("transformer", Transformer(cfg_));
  // GPT-2 init (nanoGPT _init_weights + the c_proj special case). LayerNorms keep ones/zeros.
  torch::NoGradGuard no_grad;
  const double proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg_.n_layer));
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    const bool is_ln = name.find(".ln_") != std::string::npos;
    if (is_ln) continue;
    if (!name.ends_with(".weight")) {
      p.zero_();  // Linear biases
    } else if (name.ends_with(".c_proj.weight")) {
      p.normal_(0.0, proj_std);
    } else {
      p.normal_(0.0, 0.02);  // wte (= lm_head), wpe, c_attn, c_fc
    }
  }
}

torch::Tensor GptImpl::hidden(const torch::Tensor& idx) {
  LH_CHECK(idx.dim() == 2 && idx.scalar_type() == torch::kLong, "idx must be [B, T] int64, got ",
           idx.sizes(), " ", idx.scalar_type());
  const int64_t T = idx.size(1);
  LH_CHECK(T >= 1 && T <= cfg_.block_size, "sequence length ", T,
           " outside [1, block_size = ", cfg_.block_size, "]");
  auto pos =
      torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(idx.device()));  // [T]
  auto x = transformer->wte(idx) + transformer->wpe(pos);  // [B, T, C]
  x = maybe_dropout(x, cfg_.dropout, is_training());
  for (const auto& block : *transformer->h) x = block->as<BlockImpl>()->forward(x);
  x = transformer->ln_f(x);
  return x;
}

torch::Tensor GptImpl::forward(const torch::Tensor& idx) {
  return torch::linear(hidden(idx), transformer->wte->weight);  // tied lm_head, no bias: [B, T, vocab]
}

std::pair<double, int64_t> GptImpl::loss_sum_chunked(const torch::Tensor& idx, const torch::Tensor& targets,
                                                     int64_t positions) {
  LH_CHECK(targets.sizes() == idx.sizes(), "targets ", targets.sizes(), " vs idx ", idx.sizes());
  LH_CHECK(positions >= 1, "positions ", positions);
  torch::NoGradGuard no_grad;
  const torch::Tensor h = hidden(idx);  // [B, T, C]
  // Summed on the model's device (each chunk's sum in fp64): one host sync per call, not two per chunk.
  torch::Tensor sum = torch::zeros({}, h.options().dtype(torch::kFloat64));
  torch::Tensor count = torch::zeros({}, h.options().dtype(torch::kInt64));
  for (int64_t t0 = 0; t0 < h.size(1); t0 += positions) {
    const int64_t len = std::min(positions, h.size(1) - t0);
    const torch::Tensor logits = torch::linear(h.narrow(1, t0, len), transformer->wte->weight);
    const torch::Tensor y = targets.narrow(1, t0, len).reshape({-1});
    sum += torch::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), y, /*weight=*/{}, at::Reduction::Sum,
                                     /*ignore_index=*/-1)
               .to(torch::kFloat64);
    count += y.ne(-1).sum();
  }
  return {sum.item<double>(), count.item<int64_t>()};
}

torch::Tensor GptImpl::loss(const torch::Tensor& idx, const torch::Tensor& targets) {
  LH_CHECK(targets.sizes() == idx.sizes(), "targets ", targets.sizes(), " vs idx ", idx.sizes());
  auto logits = forward(idx);
  return torch::cross_entropy_loss(logits.view({-1, logits.size(-1)}), targets.reshape({-1}),
                                   /*weight=*/{}, at::Reduction::Mean, /*ignore_index=*/-1);
}

int64_t GptImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

}  // namespace longhaul::inner
