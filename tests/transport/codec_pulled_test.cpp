// encode_with_feedback_pulled() and encode_prequantized(): the same payload bytes and residual
// as encode_with_feedback() (issue 13 §2: the site never holds Δ whole; a GPU site quantizes on
// the device and hands the codec only levels and scales).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "codec_util.h"
#include "transport/codec.h"
#include "transport/wire_format.h"

namespace longhaul::transport {
namespace {
using namespace testing;

// Inputs with what stresses a quantizer: zeros, exact ties at half levels, tiny, huge.
std::vector<float> nasty(uint64_t n, uint32_t seed) {
  auto x = gaussian(n, seed, 1.0f);
  for (uint64_t i = 0; i < n; ++i) {
    switch (i % 11) {
      case 0: x[i] = 0.0f; break;
      case 3: x[i] = 0.5f * std::round(x[i] * 8); break;  // halves: ties after scaling
      case 5: x[i] *= 1e-30f; break;
      case 7: x[i] *= 1e20f; break;
      default: break;
    }
  }
  for (uint64_t i = 200; i < std::min<uint64_t>(n, 264); ++i) x[i] = 0.0f;  // a zero block
  return x;
}

// A reference quantizer outside the codec (the rules of codec.h, written out): what a device
// quantizer produces, as raw chunk bytes.
void quantize_ref(const float* y, uint64_t n, uint32_t block, bool int8, std::byte* raw) {
  const float levels = int8 ? 127.0f : 7.0f;
  const uint64_t nb = wire::block_count(n, block);
  std::byte* q = raw + 2 * nb;
  if (!int8) std::memset(q, 0, (n + 1) / 2);
  for (uint64_t b = 0; b < nb; ++b) {
    const uint64_t b0 = b * block, m = std::min<uint64_t>(block, n - b0);
    float mx = 0;
    for (uint64_t i = 0; i < m; ++i) mx = std::max(mx, std::fabs(y[b0 + i]));
    uint32_t bits = std::bit_cast<uint32_t>(mx / levels);
    if (bits & 0xffffu) bits += 0x10000u;
    uint16_t sb = std::max<uint16_t>(static_cast<uint16_t>(bits >> 16), 0x0080);
    wire::put_u16(raw + 2 * b, sb);
    const float s = std::bit_cast<float>(uint32_t{sb} << 16), inv = 1.0f / s;
    for (uint64_t i = 0; i < m; ++i) {
      float v = std::nearbyint(y[b0 + i] * inv);
      v = std::clamp(v, -levels, levels);
      const int l = static_cast<int>(v);
      const uint64_t k = b0 + i;
      if (int8) {
        q[k] = static_cast<std::byte>(static_cast<int8_t>(l));
      } else {
        q[k / 2] |= static_cast<std::byte>((k & 1) ? (unsigned(l + 8) << 4) : unsigned(l + 8));
      }
    }
  }
}

TEST(CodecPulled, SameBytesAndResidualAsEncodeWithFeedback) {
  for_each_codec_case(kAllEncodings, {8, 64, 128}, {0, 3}, {1, 777, 5000}, [](Encoding e, uint32_t block, int zstd,
                                                                              uint64_t n) {
    CodecOptions o{.encoding = e, .block_size = block, .zstd_level = zstd, .chunk_elements = block * 8};
    const Manifest m = flat_manifest(n);
    auto x = nasty(n, 7 + n);
    if (e == Encoding::kFp16)
      for (auto& v : x) v = std::clamp(v, -6e4f, 6e4f);
    auto r0 = gaussian(n, 99, 1e-3f), r1 = r0;
    const Bytes want = encode_with_feedback(x, r0, m, o);
    int calls = 0;
    const Bytes got = encode_with_feedback_pulled(
        [&](uint64_t begin, std::span<float> out) {
          ++calls;
          std::memcpy(out.data(), x.data() + begin, out.size_bytes());
        },
        r1, m, o);
    EXPECT_TRUE(want == got);
    EXPECT_EQ(0, std::memcmp(r0.data(), r1.data(), n * sizeof(float)));
    EXPECT_EQ(calls, 2 * static_cast<int>((n + o.chunk_elements - 1) / o.chunk_elements));
  });
}

TEST(CodecPulled, ErrorLeavesResidualUnchanged) {
  const uint64_t n = 3000;
  const Manifest m = flat_manifest(n);
  auto x = gaussian(n, 3, 1.0f);
  x[2500] = std::numeric_limits<float>::quiet_NaN();
  auto r = gaussian(n, 4), before = r;
  CodecOptions o{.encoding = Encoding::kInt8, .block_size = 64, .chunk_elements = 1024};
  EXPECT_THROW(encode_with_feedback_pulled(
                   [&](uint64_t b, std::span<float> out) { std::memcpy(out.data(), x.data() + b, out.size_bytes()); },
                   r, m, o),
               EncodeError);
  EXPECT_EQ(0, std::memcmp(r.data(), before.data(), n * sizeof(float)));
}

TEST(CodecPrequantized, SameBytesAsEncode) {
  const Encoding quantized[] = {Encoding::kInt8, Encoding::kInt4};
  for_each_codec_case(quantized, {8, 32, 128}, {0, 5}, {1, 1001, 4096}, [](Encoding e, uint32_t block, int zstd,
                                                                           uint64_t n) {
    CodecOptions o{.encoding = e, .block_size = block, .zstd_level = zstd, .chunk_elements = block * 4};
    const Manifest m = flat_manifest(n);
    const auto x = nasty(n, 11 + block);
    const Bytes want = encode(x, m, o);
    const Bytes got = encode_prequantized(
        [&](uint32_t, uint64_t begin, uint64_t cn, std::span<std::byte> raw) {
          ASSERT_EQ(raw.size(), wire::raw_chunk_bytes(e, cn, block));
          quantize_ref(x.data() + begin, cn, block, e == Encoding::kInt8, raw.data());
        },
        m, o);
    EXPECT_TRUE(want == got);
  });
}

TEST(CodecPrequantized, RefusesWhatTheCodecNeverWrites) {
  const uint64_t n = 64;
  const Manifest m = flat_manifest(n);
  CodecOptions o{.encoding = Encoding::kInt8, .block_size = 32, .chunk_elements = 64};
  auto fill = [&](uint16_t scale, std::byte level) {
    return [=](uint32_t, uint64_t, uint64_t cn, std::span<std::byte> raw) {
      wire::put_u16(raw.data(), scale), wire::put_u16(raw.data() + 2, 0x3f80);
      std::fill(raw.begin() + 4, raw.end(), std::byte{1});
      raw[4] = level;
    };
  };
  EXPECT_NO_THROW(encode_prequantized(fill(0x3f80, std::byte{5}), m, o));
  EXPECT_THROW(encode_prequantized(fill(0x7f80, std::byte{5}), m, o), EncodeError);  // Inf scale
  EXPECT_THROW(encode_prequantized(fill(0xbf80, std::byte{5}), m, o), EncodeError);  // negative
  EXPECT_THROW(encode_prequantized(fill(0x3f80, std::byte{0x80}), m, o), EncodeError);  // -128
  o.encoding = Encoding::kFp32;
  EXPECT_ANY_THROW(encode_prequantized(fill(0x3f80, std::byte{5}), m, o));
}

}  // namespace
}  // namespace longhaul::transport
