// The model: a decoder-only transformer with exactly nanoGPT's architecture (karpathy/nanoGPT
// model.py, MIT): learned token + position embeddings, pre-LayerNorm blocks (eps 1e-5), causal
// self-attention with one fused c_attn projection (LibTorch's fused scaled_dot_product_attention,
// is_causal=true), exact-erf GELU MLP of width 4·n_embd, final LayerNorm, LM head tied to wte.
//
// Parameter names are nanoGPT's state_dict names, in nanoGPT's named_parameters() order:
//   transformer.wte.weight [vocab, C], transformer.wpe.weight [block, C],
//   transformer.h.{i}.ln_1.{weight,bias}, .attn.c_attn.{weight [3C, C], bias},
//   .attn.c_proj.{weight,bias}, .ln_2.{weight,bias}, .mlp.c_fc.{weight [4C, C], bias},
//   .mlp.c_proj.{weight [C, 4C], bias}, transformer.ln_f.{weight,bias}.
// lm_head.weight is the same tensor as transformer.wte.weight; it is not a separate parameter and
// appears only in exports (export_model), as in nanoGPT's state_dict. These names are the wire
// manifest too (flat_params.h): keep them stable.
#pragma once

#include <torch/torch.h>

#include "inner/gpt_config.h"

namespace longhaul::inner {

// nanoGPT's LayerNorm: weight (ones) and optional bias (zeros), eps 1e-5.
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t ndim, bool bias);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;  // bias undefined when bias=false
};
TORCH_MODULE(LayerNorm);

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const GptConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);  // [B, T, C] -> [B, T, C]
  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};

 private:
  int64_t n_head_, n_embd_;
  double dropout_;
};
TORCH_MODULE(CausalSelfAttention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const GptConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);  // [B, T, C] -> [B, T, C]
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(Mlp);

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const GptConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);  // x + attn(ln_1(x)), then + mlp(ln_2(x))
  LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

// nanoGPT's `transformer` ModuleDict: wte, wpe, h (ModuleList of Block), ln_f.
class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const GptConfig& cfg);
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  LayerNorm ln_f{nullptr};
};
TORCH_MODULE(Transformer);

class GptImpl : public torch::nn::Module {
 public:
  // Validates cfg (ConfigError) and initialises as GPT-2 / nanoGPT: Linear and Embedding weights
  // ~ N(0, 0.02), every c_proj.weight ~ N(0, 0.02/sqrt(2·n_layer)), biases 0, LayerNorm 1/0.
  // Draws from torch's global generator (seed it with torch::manual_seed for reproducibility).
  explicit GptImpl(const GptConfig& cfg);

  // idx [B, T] int64 token ids (T <= block_size) -> logits [B, T, vocab_size] (fp32 outside
  // autocast). Unlike nanoGPT's inference shortcut, always returns every position.
  torch::Tensor forward(const torch::Tensor& idx);
  // The final hidden states (after ln_f), [B, T, n_embd]: forward() before the lm_head.
  torch::Tensor hidden(const torch::Tensor& idx);
  // Mean token cross-entropy (nats) of forward(idx) against targets [B, T] int64; scalar.
  // Targets equal to -1 are ignored (nanoGPT's ignore_index).
  torch::Tensor loss(const torch::Tensor& idx, const torch::Tensor& targets);
  // The same loss as a sum over tokens and a count, with logits made `positions` positions at
  // a time: activation memory B·positions·vocab instead of B·T·vocab (evaluation without
  // autograd; at vocab 50304 and T 1024 the full logits are 206 MB per sequence).
  // Returns {Σ token losses (fp64), tokens counted}.
  std::pair<double, int64_t> loss_sum_chunked(const torch::Tensor& idx, const torch::Tensor& targets,
                                              int64_t positions);

  const GptConfig& config() const { return cfg_; }
  // Number of distinct parameter elements (the tied lm_head counted once, wpe included).
  int64_t num_parameters() const;

  Transformer transformer{nullptr};

 private:
  GptConfig cfg_;
};
TORCH_MODULE(Gpt);

}  // namespace longhaul::inner
