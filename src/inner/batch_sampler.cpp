#include "inner/batch_sampler.h"

#include "common/error.h"

namespace longhaul::inner {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

BatchSampler::BatchSampler(const std::vector<uint16_t>& tokens, int64_t batch_size,
                           int64_t block_size, uint64_t seed)
    : tokens_(&tokens), batch_size_(batch_size), block_size_(block_size), state_{seed, 0} {
  LH_CHECK(batch_size > 0 && block_size > 0, "batch_size ", batch_size, " block_size ", block_size);
  LH_CHECK(static_cast<int64_t>(tokens.size()) >= block_size + 1, "stream of ", tokens.size(),
           " tokens is shorter than block_size + 1 = ", block_size + 1);
}

Batch BatchSampler::next() {
  // Number of valid window starts: n - T (offsets 0 .. n - T - 1).
  const auto starts = static_cast<uint64_t>(tokens_->size()) - static_cast<uint64_t>(block_size_);
  std::vector<int64_t> offsets(batch_size_);
  for (auto& off : offsets) {
    uint64_t r = splitmix64(state_.seed ^ splitmix64(state_.draws++));
    off = static_cast<int64_t>((static_cast<unsigned __int128>(r) * starts) >> 64);
  }
  return make_batch(*tokens_, offsets, block_size_);
}

std::vector<int64_t> evenly_spaced_offsets(size_t n_tokens, int64_t block_size, int64_t count) {
  LH_CHECK(static_cast<int64_t>(n_tokens) >= block_size + 1 && count > 0);
  const int64_t last = static_cast<int64_t>(n_tokens) - block_size - 1;
  std::vector<int64_t> out(count);
  for (int64_t k = 0; k < count; ++k)
    out[k] = count == 1 ? 0 : static_cast<int64_t>((static_cast<__int128>(last) * k) / (count - 1));
  return out;
}

Batch make_batch(const std::vector<uint16_t>& tokens, const std::vector<int64_t>& offsets,
                 int64_t block_size) {
  const auto B = static_cast<int64_t>(offsets.size());
  auto xy = torch::empty({B, block_size + 1}, torch::kInt64);  // [B, T+1]
  auto* p = xy.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    LH_CHECK(offsets[b] >= 0 && offsets[b] + block_size + 1 <= static_cast<int64_t>(tokens.size()));
    const uint16_t* src = tokens.data() + offsets[b];
    for (int64_t t = 0; t <= block_size; ++t) p[b * (block_size + 1) + t] = src[t];
  }
  return {xy.slice(1, 0, block_size).contiguous(), xy.slice(1, 1, block_size + 1).contiguous()};
}

}  // namespace longhaul::inner
