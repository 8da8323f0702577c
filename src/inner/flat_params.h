// The meeting point between LibTorch and transport: a module's parameters as one flat fp32
// vector in named_parameters() order, described by a transport::Manifest (name, shape, offset).
// For a Gpt these are nanoGPT's names (see gpt.h); the tied lm_head is not in the vector.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <span>
#include <vector>

#include "transport/manifest.h"

namespace longhaul::inner {

// Names and shapes of m.named_parameters(), offsets packed in that order.
transport::Manifest param_manifest(torch::nn::Module& m);

// Copies every parameter (any device, any floating dtype) into `out` as host fp32.
// out.size() must equal param_manifest(m).total_elements() (InvariantError otherwise).
void params_to_flat(torch::nn::Module& m, std::span<float> out);
std::vector<float> params_to_flat(torch::nn::Module& m);

// Copies `in` back into the parameters (converted to each parameter's device and dtype), under
// NoGradGuard: autograd does not see it; the optimizer state is untouched.
void flat_to_params(torch::nn::Module& m, std::span<const float> in);

// XXH3-64 of the flat fp32 bytes (little-endian host): equal iff the parameter vectors are
// bitwise identical (up to hash collisions). Streams tensor by tensor; no full copy.
uint64_t params_hash(torch::nn::Module& m);
uint64_t flat_hash(std::span<const float> flat);  // the same hash of an explicit flat vector

}  // namespace longhaul::inner
