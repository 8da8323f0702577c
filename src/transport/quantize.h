// Per-chunk kernels: fp32 <-> one chunk's raw bytes (layout in transport/wire_format.h).
// Two implementations, chosen once at runtime: portable scalar (any x86-64 / other arch) and
// AVX2+F16C (x86-64, __builtin_cpu_supports). Both give bitwise-identical results: rounding is
// round-to-nearest-even in both (the scalar path rounds with the 1.5*2^23 trick, the AVX2 path
// with cvtps2dq/vcvtps2ph in the default MXCSR mode).
#pragma once

#include <cstddef>
#include <cstdint>

#include "transport/codec.h"

namespace longhaul::transport::kernels {

inline constexpr int64_t kOk = -1;
// Largest scale an int8/int4 block may carry (bf16 bits of 2^120): level * scale stays finite.
inline constexpr uint16_t kMaxScaleBits = 0x7b80;
inline constexpr uint16_t kMinScaleBits = 0x0080;  // FLT_MIN: 1/scale stays finite

// Quantizes x[0, n) into raw (raw_chunk_bytes(e, n, block) bytes). Returns kOk, or the index
// of the first element that cannot be encoded (non-finite, or out of range for the format).
int64_t encode_chunk(Encoding e, const float* x, uint64_t n, uint32_t block, std::byte* raw);

// Dequantizes raw into out[0, n): out = decoded (accumulate false) or out += weight * decoded
// (accumulate true; the product weight * decoded is rounded, then added). Returns kOk, or the
// index of the first block whose scale is invalid (nothing of that block is written).
int64_t decode_chunk(Encoding e, const std::byte* raw, uint64_t n, uint32_t block, float* out,
                     bool accumulate, float weight);

// "avx2" or "scalar": the implementation in use.
const char* kernel_name();
// Forces the scalar path (tests compare both paths); returns the previous setting.
bool force_scalar_kernels(bool on);

// Scalar helpers shared by both paths.
uint16_t f32_to_bf16_rne(float f);  // caller ensures finite
uint16_t f32_to_fp16_rne(float f);  // caller ensures |f| < 65520 (rounds to finite)
float fp16_to_f32(uint16_t h);

}  // namespace longhaul::transport::kernels
