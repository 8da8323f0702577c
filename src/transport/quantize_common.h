// Inline helpers shared by the scalar and AVX2 kernels (internal to quantize_*.cpp).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "transport/quantize.h"

namespace longhaul::transport::kernels::detail {

inline uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
inline float float_of(uint32_t u) { return std::bit_cast<float>(u); }
inline float bf16_to_f32(uint16_t b) { return float_of(uint32_t{b} << 16); }
inline uint16_t load_u16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void store_u16(std::byte* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Round to nearest integer, ties to even, for |v| < 2^22 (the 1.5 * 2^23 trick; needs strict
// IEEE evaluation, which we have: no -ffast-math).
inline float round_rne(float v) { return (v + 0x1.8p23f) - 0x1.8p23f; }

inline constexpr uint32_t kAbsMask = 0x7fffffffu;
inline constexpr uint32_t kInfBits = 0x7f800000u;

// Scale of a block from its absmax bits (finite): absmax / levels rounded UP to bf16, at least
// FLT_MIN. Returns false when the scale would exceed kMaxScaleBits.
inline bool block_scale(uint32_t max_abs_bits, float levels, uint16_t* scale_bits, float* scale,
                        float* inv) {
  uint32_t b = bits_of(float_of(max_abs_bits) / levels);
  if (b & 0xffffu) b += 0x10000u;
  uint16_t sb = static_cast<uint16_t>(b >> 16);
  if (sb < kMinScaleBits) sb = kMinScaleBits;
  if (sb > kMaxScaleBits) return false;
  *scale_bits = sb;
  *scale = bf16_to_f32(sb);
  *inv = 1.0f / *scale;
  return true;
}

inline bool scale_ok(uint16_t sb) { return sb <= kMaxScaleBits; }  // also rejects sign bit

// Index of the first element in x[0, n) whose |bits| >= limit_bits (non-finite for kInfBits).
inline int64_t first_at_least(const float* x, uint64_t n, uint32_t limit_bits) {
  for (uint64_t i = 0; i < n; ++i)
    if ((bits_of(x[i]) & kAbsMask) >= limit_bits) return static_cast<int64_t>(i);
  return kOk;
}

inline int8_t quantize_one(float x, float inv, float levels) {
  float v = round_rne(x * inv);
  v = v > levels ? levels : (v < -levels ? -levels : v);
  return static_cast<int8_t>(static_cast<int>(v));
}

// The signed level of element k of a quantized section q: int8 as stored; int4 two per byte,
// element k in the low nibble when k is even, stored with a bias of 8.
inline int level_at(const std::byte* q, uint64_t k, bool int8) {
  if (int8) return static_cast<int8_t>(q[k]);
  const unsigned byte = static_cast<unsigned>(q[k / 2]);
  return static_cast<int>((k & 1) ? (byte >> 4) : (byte & 0xfu)) - 8;
}

}  // namespace longhaul::transport::kernels::detail
