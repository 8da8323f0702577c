// raw_payload_bytes: a zstd payload's size before the lossless stage equals, byte for byte, the
// size of the same vector encoded with zstd off (every encoding, a short tail chunk included).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "outer/wire_bytes.h"
#include "transport/codec.h"

namespace longhaul::outer {
namespace {

using transport::CodecOptions;
using transport::Encoding;

TEST(WireBytes, RawBytesOfAZstdPayloadEqualTheUncompressedPayloadSize) {
  // 5 chunks of 1024 and a tail of 77 elements; smooth values with a little noise, like a
  // pseudo-gradient: the fp32 exponent planes compress, so some chunks are stored compressed.
  const uint64_t n = 5 * 1024 + 77;
  transport::Manifest m;
  m.add("w", {static_cast<int64_t>(n)});
  std::mt19937 rng(5);
  std::normal_distribution<float> noise(0.f, 1e-5f);
  std::vector<float> x(n);
  for (uint64_t i = 0; i < n; ++i) x[i] = 1e-3f * std::sin(0.01f * i) + noise(rng);
  for (Encoding e : {Encoding::kFp32, Encoding::kBf16, Encoding::kFp16, Encoding::kInt8, Encoding::kInt4}) {
    CodecOptions plain{.encoding = e, .block_size = 128, .zstd_level = 0, .chunk_elements = 1024};
    CodecOptions zstd = plain;
    zstd.zstd_level = 3;
    const auto p = transport::encode(x, m, plain), z = transport::encode(x, m, zstd);
    const auto ip = transport::inspect(p, n), iz = transport::inspect(z, n);
    EXPECT_EQ(ip.chunks, 6u);
    EXPECT_EQ(ip.compressed_chunks, 0u);
    EXPECT_EQ(raw_payload_bytes(ip), p.size()) << transport::encoding_name(e);
    EXPECT_EQ(raw_payload_bytes(iz), p.size()) << transport::encoding_name(e);
    EXPECT_LE(z.size(), p.size()) << transport::encoding_name(e);
    if (e == Encoding::kFp32) {
      EXPECT_GT(iz.compressed_chunks, 0u);
      EXPECT_LT(z.size(), p.size());
    }
  }
}

TEST(WireBytes, EmptyVectorIsJustHeaderAndTable) {
  transport::Manifest m;
  const std::vector<float> x;
  CodecOptions o{.encoding = Encoding::kInt8, .zstd_level = 3};
  const auto p = transport::encode(x, m, o);
  EXPECT_EQ(raw_payload_bytes(transport::inspect(p, 0)), p.size());
}

}  // namespace
}  // namespace longhaul::outer
