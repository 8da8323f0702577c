// Portable scalar kernels (the reference; the AVX2 path must match them bit for bit) and the
// runtime dispatch between the two.
#include <algorithm>
#include <atomic>
#include <cstring>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "transport/quantize.h"
#include "transport/quantize_common.h"
#include "transport/wire_format.h"

namespace longhaul::transport::kernels {

using namespace detail;

uint16_t f32_to_bf16_rne(float f) {
  uint32_t b = bits_of(f);
  return static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

uint16_t f32_to_fp16_rne(float f) {
  uint32_t x = bits_of(f);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= kAbsMask;
  if (x >= 0x38800000u) {  // |f| >= 2^-14: normal half; rebias exponent by 127 - 15
    uint32_t r = x - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return static_cast<uint16_t>(sign | (r >> 13));
  }
  // Subnormal half (or zero): adding 0.5f aligns the half's ulp (2^-24) with the float's
  // last mantissa bit, and the FPU's addition rounds to nearest even for us.
  float a = float_of(x) + 0.5f;
  return static_cast<uint16_t>(sign | (bits_of(a) - bits_of(0.5f)));
}

float fp16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t{h & 0x8000u} << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) return float_of(sign | bits_of(static_cast<float>(m) * 0x1p-24f));
  if (e == 31) return float_of(sign | kInfBits | (m << 13));
  return float_of(sign | ((e + 112) << 23) | (m << 13));
}

namespace scalar {

// GCC 12's -O2 vectorizes only loops without epilogues ("very cheap" cost model); these
// kernels are the portable (SSE2 baseline) path, so let it vectorize them properly.
#if defined(__GNUC__) && !defined(__clang__)
#define LH_VECTORIZE __attribute__((optimize("vect-cost-model=dynamic")))
#else
#define LH_VECTORIZE
#endif

LH_VECTORIZE int64_t encode_chunk(Encoding e, const float* x, uint64_t n, uint32_t block,
                                  std::byte* raw) {
  switch (e) {
    case Encoding::kFp32: {
      int64_t bad = first_at_least(x, n, kInfBits);
      if (bad != kOk) return bad;
      std::memcpy(raw, x, 4 * n);
      return kOk;
    }
    case Encoding::kBf16:
      for (uint64_t i = 0; i < n; ++i) {
        if ((bits_of(x[i]) & kAbsMask) >= kInfBits) return static_cast<int64_t>(i);
        uint16_t h = f32_to_bf16_rne(x[i]);
        if ((h & 0x7fffu) == 0x7f80u) return static_cast<int64_t>(i);  // rounded to Inf
        store_u16(raw + 2 * i, h);
      }
      return kOk;
    case Encoding::kFp16: {
      int64_t bad = first_at_least(x, n, bits_of(65520.0f));  // rounds to Inf from here on
      if (bad != kOk) return bad;
      for (uint64_t i = 0; i < n; ++i) store_u16(raw + 2 * i, f32_to_fp16_rne(x[i]));
      return kOk;
    }
    case Encoding::kInt8:
    case Encoding::kInt4: {
      const bool int8 = e == Encoding::kInt8;
      const float levels = int8 ? 127.0f : 7.0f;
      const uint64_t nblocks = wire::block_count(n, block);
      std::byte* q = raw + 2 * nblocks;
      for (uint64_t b0 = 0, bi = 0; b0 < n; b0 += block, ++bi) {
        const uint64_t m = std::min<uint64_t>(block, n - b0);
        const float* xb = x + b0;
        uint32_t mx = 0;
        for (uint64_t i = 0; i < m; ++i) mx = std::max(mx, bits_of(xb[i]) & kAbsMask);
        if (mx >= kInfBits) return static_cast<int64_t>(b0) + first_at_least(xb, m, kInfBits);
        uint16_t sb;
        float s, inv;
        if (!block_scale(mx, levels, &sb, &s, &inv))
          return static_cast<int64_t>(b0) + first_at_least(xb, m, mx);
        store_u16(raw + 2 * bi, sb);
        if (int8) {
          for (uint64_t i = 0; i < m; ++i)
            q[b0 + i] = static_cast<std::byte>(quantize_one(xb[i], inv, levels));
        } else {
          for (uint64_t i = 0; i < m; i += 2) {  // b0 is even: block sizes are multiples of 8
            unsigned lo = static_cast<unsigned>(quantize_one(xb[i], inv, levels) + 8);
            unsigned hi =
                i + 1 < m ? static_cast<unsigned>(quantize_one(xb[i + 1], inv, levels) + 8) : 0u;
            q[(b0 + i) / 2] = static_cast<std::byte>(lo | (hi << 4));
          }
        }
      }
      return kOk;
    }
  }
  return 0;
}

namespace {
inline void put(float* out, uint64_t i, float d, bool acc, float w) {
  if (acc) {
    float p = w * d;
    out[i] = out[i] + p;
  } else {
    out[i] = d;
  }
}
}  // namespace

LH_VECTORIZE int64_t decode_chunk(Encoding e, const std::byte* raw, uint64_t n, uint32_t block,
                                  float* out, bool acc, float w) {
  switch (e) {
    case Encoding::kFp32:
      if (!acc) {
        std::memcpy(out, raw, 4 * n);
      } else {
        for (uint64_t i = 0; i < n; ++i) {
          float d;
          std::memcpy(&d, raw + 4 * i, 4);
          put(out, i, d, true, w);
        }
      }
      return kOk;
    case Encoding::kBf16:
      for (uint64_t i = 0; i < n; ++i) put(out, i, bf16_to_f32(load_u16(raw + 2 * i)), acc, w);
      return kOk;
    case Encoding::kFp16:
      for (uint64_t i = 0; i < n; ++i) put(out, i, fp16_to_f32(load_u16(raw + 2 * i)), acc, w);
      return kOk;
    case Encoding::kInt8:
    case Encoding::kInt4: {
      const bool int8 = e == Encoding::kInt8;
      const uint64_t nblocks = wire::block_count(n, block);
      const std::byte* q = raw + 2 * nblocks;
      for (uint64_t b0 = 0, bi = 0; b0 < n; b0 += block, ++bi) {
        const uint64_t m = std::min<uint64_t>(block, n - b0);
        const uint16_t sb = load_u16(raw + 2 * bi);
        if (!scale_ok(sb)) return static_cast<int64_t>(bi);
        const float s = bf16_to_f32(sb);
        if (int8) {  // the hot case, in branch-free loops the compiler vectorizes
          const int8_t* qb = reinterpret_cast<const int8_t*>(q) + b0;
          float* ob = out + b0;
          if (acc) {
            for (uint64_t i = 0; i < m; ++i) {
              float p = w * (static_cast<float>(qb[i]) * s);
              ob[i] = ob[i] + p;
            }
          } else {
            for (uint64_t i = 0; i < m; ++i) ob[i] = static_cast<float>(qb[i]) * s;
          }
          continue;
        }
        for (uint64_t i = 0; i < m; ++i) {
          const uint64_t k = b0 + i;
          put(out, k, static_cast<float>(level_at(q, k, int8)) * s, acc, w);
        }
      }
      return kOk;
    }
  }
  return kOk;
}

}  // namespace scalar

#if defined(__x86_64__)
namespace avx2 {
int64_t encode_chunk(Encoding e, const float* x, uint64_t n, uint32_t block, std::byte* raw);
int64_t decode_chunk(Encoding e, const std::byte* raw, uint64_t n, uint32_t block, float* out,
                     bool acc, float w);
}  // namespace avx2
#endif

namespace {
bool cpu_has_avx2() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  unsigned a = 0, b = 0, c = 0, d = 0;  // F16C: CPUID.1:ECX bit 29 (clang's builtin lacks "f16c")
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
  return __builtin_cpu_supports("avx2") && f16c;
#else
  return false;
#endif
}
const bool kHaveAvx2 = cpu_has_avx2();
std::atomic<bool> g_force_scalar{false};
inline bool use_avx2() { return kHaveAvx2 && !g_force_scalar.load(std::memory_order_relaxed); }
}  // namespace

int64_t encode_chunk(Encoding e, const float* x, uint64_t n, uint32_t block, std::byte* raw) {
#if defined(__x86_64__)
  if (use_avx2()) return avx2::encode_chunk(e, x, n, block, raw);
#endif
  return scalar::encode_chunk(e, x, n, block, raw);
}

int64_t decode_chunk(Encoding e, const std::byte* raw, uint64_t n, uint32_t block, float* out,
                     bool acc, float w) {
#if defined(__x86_64__)
  if (use_avx2()) return avx2::decode_chunk(e, raw, n, block, out, acc, w);
#endif
  return scalar::decode_chunk(e, raw, n, block, out, acc, w);
}

const char* kernel_name() { return use_avx2() ? "avx2" : "scalar"; }

bool force_scalar_kernels(bool on) { return g_force_scalar.exchange(on); }

}  // namespace longhaul::transport::kernels
