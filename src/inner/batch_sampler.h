// Batches of random training windows, drawn from a counter-based generator so that its whole
// state is two integers (seed, draws): a checkpoint stores them and a resumed run draws
// exactly the batches an uninterrupted run would have.
//
// Window k (k = 0, 1, 2, ... over the run) starts at offset
//   splitmix64(seed, k) mapped onto [0, n_tokens - block_size - 1]   (multiply-shift; bias < 2^-40)
// and yields x = tokens[off, off + T), y = tokens[off + 1, off + T + 1).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace longhaul::inner {

struct SamplerState {
  uint64_t seed = 0;
  uint64_t draws = 0;  // windows drawn so far
};

struct Batch {
  torch::Tensor x;  // [B, T] int64, CPU, input tokens
  torch::Tensor y;  // [B, T] int64, CPU, next-token targets
};

class BatchSampler {
 public:
  // `tokens` must outlive the sampler and hold at least block_size + 1 tokens.
  BatchSampler(const std::vector<uint16_t>& tokens, int64_t batch_size, int64_t block_size,
               uint64_t seed);

  Batch next();  // draws batch_size windows
  SamplerState state() const { return state_; }
  void set_state(const SamplerState& s) { state_ = s; }
  int64_t batch_size() const { return batch_size_; }

 private:
  const std::vector<uint16_t>* tokens_;
  int64_t batch_size_, block_size_;
  SamplerState state_;
};

// The fixed evaluation set: `count` windows at offsets evenly spaced over the whole stream
// (first at 0, last at n - T - 1), the same on every call.
std::vector<int64_t> evenly_spaced_offsets(size_t n_tokens, int64_t block_size, int64_t count);

// Builds a batch from explicit window offsets.
Batch make_batch(const std::vector<uint16_t>& tokens, const std::vector<int64_t>& offsets,
                 int64_t block_size);

}  // namespace longhaul::inner
