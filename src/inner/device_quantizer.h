// Error-feedback int8/int4 quantization with torch ops on the tensors' own device (issue 13 §2):
// a site that trains on a GPU computes y = Δ + e, the per-block scales, the levels and the new
// residual e = y − deQ(levels) there, and only the quantized bytes (levels + bf16 scales: int8 a
// quarter of fp32) cross to the host, straight into the payload buffer. The same code runs on
// the CPU (the tests compare it bit for bit with transport::encode_with_feedback()).
//
// Bitwise parity with the codec's kernels (transport/quantize_scalar.cpp): absmax / levels and
// 1 / scale are tensor-by-tensor divisions (a division by a scalar may become a multiplication
// by its reciprocal), y * (1 / scale) and level * scale are separate fp32 multiplications, and
// levels round half to even (torch::round).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>

#include "transport/bytes.h"
#include "transport/codec.h"
#include "transport/manifest.h"

namespace longhaul::inner {

// x(begin, n): elements [begin, begin + n) of the vector to send, as a 1-D fp32 tensor on the
// residual's device (e.g. θ_r − θ_local for that range). Called twice per chunk, in order; must
// return the same values each time.
using DeviceChunkSource = std::function<torch::Tensor(uint64_t begin, uint64_t n)>;

// Encodes y = x + residual like transport::encode_with_feedback(x, residual, m, o): the same
// payload bytes, and on return `residual` (1-D fp32, m.total_elements() elements, any device,
// updated in place) = y − decode(payload), bitwise. o.encoding must be int8 or int4. Non-finite
// y or a scale beyond the codec's range throws transport::EncodeError naming the element, with
// the residual unchanged. Peak extra device memory: a few chunks (o.chunk_elements) of floats.
transport::Bytes encode_with_feedback_on_device(const DeviceChunkSource& x, torch::Tensor& residual,
                                                const transport::Manifest& m,
                                                const transport::CodecOptions& o);

}  // namespace longhaul::inner
