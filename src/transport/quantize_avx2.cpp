// AVX2 + F16C kernels, compiled with target attributes so the default build stays portable
// (x86-64 baseline) and dispatches here at runtime. Block tails (fewer than 32 elements) use
// the same arithmetic as the scalar reference, so both paths produce identical bytes.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "transport/quantize.h"
#include "transport/quantize_common.h"
#include "transport/wire_format.h"

#define LH_AVX2 __attribute__((target("avx2,f16c")))

namespace longhaul::transport::kernels {
namespace scalar {
int64_t encode_chunk(Encoding e, const float* x, uint64_t n, uint32_t block, std::byte* raw);
int64_t decode_chunk(Encoding e, const std::byte* raw, uint64_t n, uint32_t block, float* out,
                     bool acc, float w);
}  // namespace scalar

namespace avx2 {
using namespace detail;

namespace {

LH_AVX2 inline uint32_t hmax_epu31(__m256i v) {
  __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}

// max over |bits| of x[0, m); values are non-negative as int32 after masking the sign.
LH_AVX2 inline uint32_t max_abs_bits(const float* x, uint64_t m) {
  const __m256i mask = _mm256_set1_epi32(0x7fffffff);
  __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
  uint64_t i = 0;
  for (; i + 16 <= m; i += 16) {
    a = _mm256_max_epi32(a, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(x + i)), mask));
    b = _mm256_max_epi32(b,
                         _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(x + i + 8)), mask));
  }
  uint32_t mx = hmax_epu31(_mm256_max_epi32(a, b));
  for (; i < m; ++i) mx = std::max(mx, bits_of(x[i]) & kAbsMask);
  return mx;
}

// 32 floats -> 32 levels in [-L, L] (int8), in element order.
LH_AVX2 inline __m256i quantize32(const float* x, __m256 inv, __m256i lim) {
  const __m256i nlim = _mm256_sub_epi32(_mm256_setzero_si256(), lim);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), inv));  // RNE
    q[k] = _mm256_max_epi32(_mm256_min_epi32(v, lim), nlim);
  }
  __m256i ab = _mm256_packs_epi32(q[0], q[1]);
  __m256i cd = _mm256_packs_epi32(q[2], q[3]);
  __m256i abcd = _mm256_packs_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

LH_AVX2 inline void put8(float* out, __m256 d, bool acc, __m256 w) {
  if (acc) d = _mm256_add_ps(_mm256_loadu_ps(out), _mm256_mul_ps(w, d));
  _mm256_storeu_ps(out, d);
}

// Dequantizes 32 int8 levels (16 in each of a, b) with scale vs into out[0..32).
LH_AVX2 inline __m256 scaled_levels8(__m128i v, __m256 vs) {  // the low 8 int8 lanes of v, times vs
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), vs);
}
LH_AVX2 inline void put32_levels(float* out, __m128i a, __m128i b, __m256 vs, bool acc, __m256 w) {
  put8(out, scaled_levels8(a, vs), acc, w);
  put8(out + 8, scaled_levels8(_mm_srli_si128(a, 8), vs), acc, w);
  put8(out + 16, scaled_levels8(b, vs), acc, w);
  put8(out + 24, scaled_levels8(_mm_srli_si128(b, 8), vs), acc, w);
}

LH_AVX2 int64_t encode_quantized(bool int8, const float* x, uint64_t n, uint32_t block,
                                 std::byte* raw) {
  const float levels = int8 ? 127.0f : 7.0f;
  const __m256i lim = _mm256_set1_epi32(int8 ? 127 : 7);
  const uint64_t nblocks = wire::block_count(n, block);
  std::byte* q = raw + 2 * nblocks;
  for (uint64_t b0 = 0, bi = 0; b0 < n; b0 += block, ++bi) {
    const uint64_t m = std::min<uint64_t>(block, n - b0);
    const float* xb = x + b0;
    const uint32_t mx = max_abs_bits(xb, m);
    if (mx >= kInfBits) return static_cast<int64_t>(b0) + first_at_least(xb, m, kInfBits);
    uint16_t sb;
    float s, inv;
    if (!block_scale(mx, levels, &sb, &s, &inv))
      return static_cast<int64_t>(b0) + first_at_least(xb, m, mx);
    store_u16(raw + 2 * bi, sb);
    const __m256 vinv = _mm256_set1_ps(inv);
    uint64_t i = 0;
    if (int8) {
      for (; i + 32 <= m; i += 32)
        _mm256_storeu_si256((__m256i*)(q + b0 + i), quantize32(xb + i, vinv, lim));
      for (; i < m; ++i) q[b0 + i] = static_cast<std::byte>(quantize_one(xb[i], inv, levels));
    } else {
      const __m256i eight = _mm256_set1_epi8(8), lo_mask = _mm256_set1_epi16(0x000f),
                    hi_mask = _mm256_set1_epi16(0x00f0);
      for (; i + 32 <= m; i += 32) {
        __m256i v = _mm256_add_epi8(quantize32(xb + i, vinv, lim), eight);  // 1..15
        __m256i comb = _mm256_or_si256(_mm256_and_si256(v, lo_mask),
                                       _mm256_and_si256(_mm256_srli_epi16(v, 4), hi_mask));
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(comb, comb), 0xd8);
        _mm_storeu_si128((__m128i*)(q + (b0 + i) / 2), _mm256_castsi256_si128(packed));
      }
      for (; i < m; i += 2) {
        unsigned lo = static_cast<unsigned>(quantize_one(xb[i], inv, levels) + 8);
        unsigned hi =
            i + 1 < m ? static_cast<unsigned>(quantize_one(xb[i + 1], inv, levels) + 8) : 0u;
        q[(b0 + i) / 2] = static_cast<std::byte>(lo | (hi << 4));
      }
    }
  }
  return kOk;
}

LH_AVX2 int64_t decode_quantized(bool int8, const std::byte* raw, uint64_t n, uint32_t block,
                                 float* out, bool acc, float w) {
  const uint64_t nblocks = wire::block_count(n, block);
  const std::byte* q = raw + 2 * nblocks;
  const __m256 vw = _mm256_set1_ps(w);
  for (uint64_t b0 = 0, bi = 0; b0 < n; b0 += block, ++bi) {
    const uint64_t m = std::min<uint64_t>(block, n - b0);
    const uint16_t sb = load_u16(raw + 2 * bi);
    if (!scale_ok(sb)) return static_cast<int64_t>(bi);
    const float s = bf16_to_f32(sb);
    const __m256 vs = _mm256_set1_ps(s);
    float* ob = out + b0;
    uint64_t i = 0;
    if (int8) {
      for (; i + 32 <= m; i += 32) {
        __m256i v = _mm256_loadu_si256((const __m256i*)(q + b0 + i));
        __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
        put32_levels(ob + i, lo, hi, vs, acc, vw);
      }
    } else {
      const __m128i nib = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
      for (; i + 32 <= m; i += 32) {
        __m128i b = _mm_loadu_si128((const __m128i*)(q + (b0 + i) / 2));
        __m128i lo = _mm_and_si128(b, nib), hi = _mm_and_si128(_mm_srli_epi16(b, 4), nib);
        __m128i e0 = _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), eight);
        __m128i e1 = _mm_sub_epi8(_mm_unpackhi_epi8(lo, hi), eight);
        put32_levels(ob + i, e0, e1, vs, acc, vw);
      }
    }
    for (; i < m; ++i) {
      float d = static_cast<float>(level_at(q, b0 + i, int8)) * s;
      if (acc) {
        float p = w * d;
        ob[i] = ob[i] + p;
      } else {
        ob[i] = d;
      }
    }
  }
  return kOk;
}

LH_AVX2 int64_t encode_fp16(const float* x, uint64_t n, std::byte* raw) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 lim = _mm256_set1_ps(65520.0f);
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, abs_mask), lim, _CMP_NLT_UQ)))
      return static_cast<int64_t>(i) + first_at_least(x + i, 8, bits_of(65520.0f));
    _mm_storeu_si128((__m128i*)(raw + 2 * i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) {
    if ((bits_of(x[i]) & kAbsMask) >= bits_of(65520.0f)) return static_cast<int64_t>(i);
    store_u16(raw + 2 * i, f32_to_fp16_rne(x[i]));
  }
  return kOk;
}

LH_AVX2 int64_t decode_half(bool fp16, const std::byte* raw, uint64_t n, float* out, bool acc,
                            float w) {
  const __m256 vw = _mm256_set1_ps(w);
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128((const __m128i*)(raw + 2 * i));
    __m256 d = fp16 ? _mm256_cvtph_ps(h)
                    : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    put8(out + i, d, acc, vw);
  }
  if (i < n)
    scalar::decode_chunk(fp16 ? Encoding::kFp16 : Encoding::kBf16, raw + 2 * i, n - i, 0, out + i,
                         acc, w);
  return kOk;
}

// fp32: copy, checking finiteness on the way.
LH_AVX2 int64_t encode_fp32(const float* x, uint64_t n, std::byte* raw) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), big = _mm256_set1_epi32(0x7f7fffff);
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i a = _mm256_loadu_si256((const __m256i*)(x + i)),
            b = _mm256_loadu_si256((const __m256i*)(x + i + 8));
    __m256i bad = _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_and_si256(a, abs_mask), big),
                                  _mm256_cmpgt_epi32(_mm256_and_si256(b, abs_mask), big));
    if (!_mm256_testz_si256(bad, bad))
      return static_cast<int64_t>(i) + first_at_least(x + i, 16, kInfBits);
    _mm256_storeu_si256((__m256i*)(raw + 4 * i), a);
    _mm256_storeu_si256((__m256i*)(raw + 4 * i + 32), b);
  }
  if (i < n) {
    const int64_t bad = scalar::encode_chunk(Encoding::kFp32, x + i, n - i, 0, raw + 4 * i);
    if (bad != kOk) return static_cast<int64_t>(i) + bad;
  }
  return kOk;
}

// bf16: round to nearest even on the bit pattern; Inf/NaN input or rounding up to Inf is bad.
LH_AVX2 int64_t encode_bf16(const float* x, uint64_t n, std::byte* raw) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), big = _mm256_set1_epi32(0x7f7fffff),
                one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff),
                inf16 = _mm256_set1_epi32(0x7f80), mag16 = _mm256_set1_epi32(0x7fff);
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i r[2];
    __m256i bad = _mm256_setzero_si256();
    for (int k = 0; k < 2; ++k) {
      __m256i b = _mm256_loadu_si256((const __m256i*)(x + i + 8 * k));
      bad = _mm256_or_si256(bad, _mm256_cmpgt_epi32(_mm256_and_si256(b, abs_mask), big));
      __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), one);
      r[k] = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(bias, lsb)), 16);
      bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(_mm256_and_si256(r[k], mag16), inf16));
    }
    if (!_mm256_testz_si256(bad, bad)) break;  // the scalar tail finds and reports it
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
    _mm256_storeu_si256((__m256i*)(raw + 2 * i), packed);
  }
  if (i < n) {
    const int64_t bad = scalar::encode_chunk(Encoding::kBf16, x + i, n - i, 0, raw + 2 * i);
    if (bad != kOk) return static_cast<int64_t>(i) + bad;
  }
  return kOk;
}

}  // namespace

LH_AVX2 int64_t encode_chunk(Encoding e, const float* x, uint64_t n, uint32_t block,
                             std::byte* raw) {
  switch (e) {
    case Encoding::kInt8:
      return encode_quantized(true, x, n, block, raw);
    case Encoding::kInt4:
      return encode_quantized(false, x, n, block, raw);
    case Encoding::kFp16:
      return encode_fp16(x, n, raw);
    case Encoding::kBf16:
      return encode_bf16(x, n, raw);
    case Encoding::kFp32:
      return encode_fp32(x, n, raw);
    default:
      return scalar::encode_chunk(e, x, n, block, raw);
  }
}

LH_AVX2 int64_t decode_chunk(Encoding e, const std::byte* raw, uint64_t n, uint32_t block,
                             float* out, bool acc, float w) {
  switch (e) {
    case Encoding::kInt8:
      return decode_quantized(true, raw, n, block, out, acc, w);
    case Encoding::kInt4:
      return decode_quantized(false, raw, n, block, out, acc, w);
    case Encoding::kFp16:
      return decode_half(true, raw, n, out, acc, w);
    case Encoding::kBf16:
      return decode_half(false, raw, n, out, acc, w);
    default:
      return scalar::decode_chunk(e, raw, n, block, out, acc, w);
  }
}

}  // namespace avx2
}  // namespace longhaul::transport::kernels
#endif  // __x86_64__
