// A tiny language model for the device-group tests (fast on one CPU thread): embedding ->
// tanh MLP -> vocabulary logits, mean token cross-entropy. Header-only so the multi-process
// helper binary can share it without another LibTorch translation unit.
#pragma once

#include <torch/torch.h>

#include "inner/device_group.h"

namespace longhaul::test {

struct TinyLmImpl : torch::nn::Module {
  TinyLmImpl(int64_t vocab, int64_t dim, int64_t hidden)
      : emb(register_module("emb", torch::nn::Embedding(vocab, dim))),
        fc(register_module("fc", torch::nn::Linear(dim, hidden))),
        out(register_module("out", torch::nn::Linear(hidden, vocab))) {}
  // x [B, T] int64 -> logits [B, T, vocab]
  torch::Tensor forward(const torch::Tensor& x) { return out(torch::tanh(fc(emb(x)))); }
  // Mean token cross-entropy, scalar.
  torch::Tensor loss(const torch::Tensor& x, const torch::Tensor& y) {
    auto logits = forward(x);
    return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), y.reshape({-1}));
  }
  torch::nn::Embedding emb;
  torch::nn::Linear fc, out;
};
TORCH_MODULE(TinyLm);

struct TinyLmShape {
  int64_t vocab = 32, dim = 16, hidden = 32, seq = 8;
};

inline std::shared_ptr<torch::nn::Module> make_tiny_lm(const TinyLmShape& s, uint64_t seed) {
  torch::manual_seed(seed);
  return TinyLm(s.vocab, s.dim, s.hidden).ptr();
}

inline inner::ReplicaFactory tiny_lm_factory(const TinyLmShape& s) {
  return [s] { return TinyLm(s.vocab, s.dim, s.hidden).ptr(); };
}

inline inner::MicroStepFn tiny_lm_micro_step() {
  return inner::micro_step_from_loss([](torch::nn::Module& m, const torch::Tensor& x, const torch::Tensor& y) {
    return static_cast<TinyLmImpl&>(m).loss(x, y);
  });
}

// Deterministic batch for (seed, step): identical in every process. Returns {x, y} [B, T].
inline std::pair<torch::Tensor, torch::Tensor> tiny_batch(const TinyLmShape& s, int64_t batch,
                                                          uint64_t seed, int64_t step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed * 1000003ULL + static_cast<uint64_t>(step));
  auto tokens = torch::randint(s.vocab, {batch, s.seq + 1}, gen, torch::kInt64);
  return {tokens.narrow(1, 0, s.seq).contiguous(), tokens.narrow(1, 1, s.seq).contiguous()};
}

}  // namespace longhaul::test
