#include "inner/flat_params.h"

#include <xxhash.h>

#include <cstring>

#include "common/error.h"

namespace longhaul::inner {
namespace {

// Host fp32 contiguous view of a parameter (a copy unless it already is one).
torch::Tensor host_fp32(const torch::Tensor& p) {
  return p.detach().to(torch::kCPU, torch::kFloat32).contiguous();
}

}  // namespace

transport::Manifest param_manifest(torch::nn::Module& m) {
  transport::Manifest manifest;
  for (const auto& item : m.named_parameters(/*recurse=*/true)) {
    const auto sizes = item.value().sizes();
    manifest.add(item.key(), std::vector<int64_t>(sizes.begin(), sizes.end()));
  }
  return manifest;
}

void params_to_flat(torch::nn::Module& m, std::span<float> out) {
  uint64_t offset = 0;
  for (const auto& p : m.parameters(/*recurse=*/true)) {
    const auto n = static_cast<uint64_t>(p.numel());
    LH_CHECK(offset + n <= out.size(), "flat vector too small: ", out.size(),
             " elements, parameters need more");
    auto dst = torch::from_blob(out.data() + offset, p.sizes(), torch::kFloat32);
    dst.copy_(p.detach());  // device -> host and dtype -> fp32 in one step
    offset += n;
  }
  LH_CHECK_EQ(offset, static_cast<uint64_t>(out.size()));
}

std::vector<float> params_to_flat(torch::nn::Module& m) {
  std::vector<float> flat(param_manifest(m).total_elements());
  params_to_flat(m, flat);
  return flat;
}

void flat_to_params(torch::nn::Module& m, std::span<const float> in) {
  torch::NoGradGuard no_grad;
  uint64_t offset = 0;
  for (auto& p : m.parameters(/*recurse=*/true)) {
    const auto n = static_cast<uint64_t>(p.numel());
    LH_CHECK(offset + n <= in.size(), "flat vector too small: ", in.size(),
             " elements, parameters need more");
    auto src = torch::from_blob(const_cast<float*>(in.data() + offset), p.sizes(), torch::kFloat32);
    p.copy_(src);
    offset += n;
  }
  LH_CHECK_EQ(offset, static_cast<uint64_t>(in.size()));
}

uint64_t params_hash(torch::nn::Module& m) {
  XXH3_state_t* state = XXH3_createState();
  LH_CHECK(state != nullptr, "XXH3_createState failed");
  XXH3_64bits_reset(state);
  for (const auto& p : m.parameters(/*recurse=*/true)) {
    auto h = host_fp32(p);
    XXH3_64bits_update(state, h.data_ptr<float>(), static_cast<size_t>(h.numel()) * sizeof(float));
  }
  const uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

uint64_t flat_hash(std::span<const float> flat) {
  return XXH3_64bits(flat.data(), flat.size_bytes());
}

}  // namespace longhaul::inner
