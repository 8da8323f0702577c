// Ranges of a module's flat fp32 parameter vector (flat_params.h's order and offsets) read
// straight from the parameters, so callers never hold the whole 4N-byte vector: the site
// computes its pseudo-gradient Δ = θ_r − θ_local a chunk at a time this way (issue 13 §2).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <span>
#include <vector>

namespace longhaul::inner {

class FlatParamRange {
 public:
  // Keeps handles to m's parameters (not copies): reads see their values at the time of the read.
  explicit FlatParamRange(torch::nn::Module& m);

  uint64_t size() const { return offsets_.back(); }
  // out = flat[begin, begin + out.size()) as host fp32 (InvariantError past the end).
  void read(uint64_t begin, std::span<float> out) const;
  // flat[begin, begin + in.size()) = in, into the parameters (their device and dtype), under
  // NoGradGuard; the optimizer state is untouched.
  void write(uint64_t begin, std::span<const float> in) const;
  // flat[begin, begin + n) as a new 1-D fp32 tensor on the parameters' device.
  torch::Tensor slice(uint64_t begin, uint64_t n) const;

 private:
  template <class Fn>  // fn(param index, offset in param, count, offset in range)
  void for_each_piece(uint64_t begin, uint64_t n, Fn&& fn) const;
  std::vector<torch::Tensor> flat_;  // each parameter, detached, as a 1-D view (or copy)
  std::vector<uint64_t> offsets_;    // offsets_[i]: where parameter i starts; back(): the total
};

// XXH64 (seed 0) of the flat fp32 bytes, streamed parameter by parameter: equal to
// outer::param_hash(params_to_flat(m)) without the 4N-byte copy.
uint64_t params_xxh64(torch::nn::Module& m);

// XXH64 (seed 0) of a contiguous 1-D fp32 tensor's bytes on any device, copied to the host a
// chunk at a time: equal to outer::param_hash() of the same values held on the host.
uint64_t tensor_xxh64(const torch::Tensor& flat);

// Copies a flat fp32 tensor (any device) into m's parameters (their device and dtype), under
// NoGradGuard: flat_to_params() for a vector that is not on the host.
void flat_tensor_to_params(torch::nn::Module& m, const torch::Tensor& flat);

}  // namespace longhaul::inner
