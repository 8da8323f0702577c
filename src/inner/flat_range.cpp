#include "inner/flat_range.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "common/error.h"

namespace longhaul::inner {

FlatParamRange::FlatParamRange(torch::nn::Module& m) {
  offsets_.push_back(0);
  for (const auto& p : m.parameters(/*recurse=*/true)) {
    LH_CHECK(p.is_contiguous(), "FlatParamRange needs contiguous parameters");
    flat_.push_back(p.detach().view({-1}));  // a view: write() reaches the parameter
    offsets_.push_back(offsets_.back() + static_cast<uint64_t>(p.numel()));
  }
}

template <class Fn>
void FlatParamRange::for_each_piece(uint64_t begin, uint64_t n, Fn&& fn) const {
  LH_CHECK(begin + n <= size(), "flat range [", begin, ", ", begin + n, ") past the end ", size());
  // The parameter holding `begin`: the last offset <= begin.
  size_t i = static_cast<size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), begin) - offsets_.begin()) - 1;
  uint64_t done = 0;
  while (done < n) {
    const uint64_t at = begin + done - offsets_[i];
    const uint64_t take = std::min<uint64_t>(n - done, offsets_[i + 1] - offsets_[i] - at);
    if (take > 0) fn(i, at, take, done);
    done += take;
    ++i;
  }
}

void FlatParamRange::read(uint64_t begin, std::span<float> out) const {
  for_each_piece(begin, out.size(), [&](size_t i, uint64_t at, uint64_t take, uint64_t to) {
    const torch::Tensor& p = flat_[i];
    if (p.device().is_cpu() && p.scalar_type() == torch::kFloat32 && p.is_contiguous()) {
      std::memcpy(out.data() + to, p.data_ptr<float>() + at, take * sizeof(float));
    } else {
      const torch::Tensor h = p.narrow(0, static_cast<int64_t>(at), static_cast<int64_t>(take))
                                  .to(torch::kCPU, torch::kFloat32)
                                  .contiguous();
      std::memcpy(out.data() + to, h.data_ptr<float>(), take * sizeof(float));
    }
  });
}

void FlatParamRange::write(uint64_t begin, std::span<const float> in) const {
  torch::NoGradGuard no_grad;
  for_each_piece(begin, in.size(), [&](size_t i, uint64_t at, uint64_t take, uint64_t from) {
    const torch::Tensor src = torch::from_blob(const_cast<float*>(in.data() + from), {static_cast<int64_t>(take)},
                                               torch::kFloat32);
    flat_[i].narrow(0, static_cast<int64_t>(at), static_cast<int64_t>(take)).copy_(src);
  });
}

torch::Tensor FlatParamRange::slice(uint64_t begin, uint64_t n) const {
  std::vector<torch::Tensor> pieces;
  for_each_piece(begin, n, [&](size_t i, uint64_t at, uint64_t take, uint64_t) {
    pieces.push_back(flat_[i].narrow(0, static_cast<int64_t>(at), static_cast<int64_t>(take)).to(torch::kFloat32));
  });
  if (pieces.size() == 1) return pieces[0].contiguous().clone();
  return torch::cat(pieces);
}

uint64_t params_xxh64(torch::nn::Module& m) {
  XXH64_state_t* state = XXH64_createState();
  LH_CHECK(state != nullptr, "XXH64_createState failed");
  XXH64_reset(state, 0);
  for (const auto& p : m.parameters(/*recurse=*/true)) {
    const torch::Tensor h = p.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    XXH64_update(state, h.data_ptr<float>(), static_cast<size_t>(h.numel()) * sizeof(float));
  }
  const uint64_t digest = XXH64_digest(state);
  XXH64_freeState(state);
  return digest;
}

uint64_t tensor_xxh64(const torch::Tensor& flat) {
  LH_CHECK(flat.dim() == 1 && flat.scalar_type() == torch::kFloat32 && flat.is_contiguous(),
           "tensor_xxh64 wants a contiguous 1-D fp32 tensor");
  XXH64_state_t* state = XXH64_createState();
  LH_CHECK(state != nullptr, "XXH64_createState failed");
  XXH64_reset(state, 0);
  constexpr int64_t kChunk = int64_t{1} << 24;  // 64 MiB of host scratch at most
  const int64_t n = flat.numel();
  for (int64_t b = 0; b < n; b += kChunk) {
    const torch::Tensor h = flat.narrow(0, b, std::min(kChunk, n - b)).to(torch::kCPU).contiguous();
    XXH64_update(state, h.data_ptr<float>(), static_cast<size_t>(h.numel()) * sizeof(float));
  }
  const uint64_t digest = XXH64_digest(state);
  XXH64_freeState(state);
  return digest;
}

void flat_tensor_to_params(torch::nn::Module& m, const torch::Tensor& flat) {
  torch::NoGradGuard no_grad;
  int64_t off = 0;
  for (auto& p : m.parameters(/*recurse=*/true)) {
    LH_CHECK(off + p.numel() <= flat.numel(), "flat tensor of ", flat.numel(), " values is too short");
    p.copy_(flat.narrow(0, off, p.numel()).view(p.sizes()));
    off += p.numel();
  }
  LH_CHECK_EQ(off, flat.numel());
}

}  // namespace longhaul::inner
