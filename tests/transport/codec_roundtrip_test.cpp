// Round trips for every encoding and awkward sizes, per-element error bounds, wire overhead,
// determinism across SIMD paths, zstd stage, decode_accumulate, input validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "codec_util.h"
#include "common/error.h"
#include "transport/codec.h"
#include "transport/quantize.h"

namespace longhaul::transport {
namespace {
using namespace testing;

// Largest allowed |x - decode(x)| for element i of x under options o.
float bound(const std::vector<float>& x, size_t i, const CodecOptions& o) {
  switch (o.encoding) {
    case Encoding::kFp32:
      return 0.0f;
    case Encoding::kBf16:
      return std::abs(x[i]) * 0x1p-8f;
    case Encoding::kFp16:
      return std::abs(x[i]) * 0x1p-11f + 0x1p-25f;
    default: {
      const float levels = o.encoding == Encoding::kInt8 ? 127.0f : 7.0f;
      size_t b0 = i / o.block_size * o.block_size, b1 = std::min(x.size(), b0 + o.block_size);
      float mx = 0;
      for (size_t k = b0; k < b1; ++k) mx = std::max(mx, std::abs(x[k]));
      // half a step; the step is absmax / levels rounded up to bf16 (< 2^-7 relative), >= FLT_MIN
      return 0.5f * std::max(mx / levels * (1.0f + 0x1p-7f), 0x1p-126f) * 1.0001f;
    }
  }
}

void round_trip(uint64_t n, const CodecOptions& o, uint32_t seed) {
  SCOPED_TRACE(std::string(encoding_name(o.encoding)) + " n=" + std::to_string(n) +
               " zstd=" + std::to_string(o.zstd_level));
  auto x = gaussian(n, seed);
  if (n > 3) x[n / 2] = 0.25f, x[1] = -3e-9f;  // an outlier and a tiny value
  Manifest m = flat_manifest(n);
  auto payload = encode(x, m, o);
  PayloadInfo info = inspect(payload, n);
  EXPECT_EQ(info.encoding, o.encoding);
  EXPECT_EQ(info.elements, n);
  EXPECT_EQ(info.manifest_hash, m.hash());
  EXPECT_EQ(info.chunks, (n + o.chunk_elements - 1) / o.chunk_elements);
  EXPECT_EQ(info.payload_bytes, payload.size());
  std::vector<float> y(n, 123.0f);
  decode(payload, y, m.hash());
  for (size_t i = 0; i < n; ++i) {
    ASSERT_LE(std::abs(x[i] - y[i]), bound(x, i, o))
        << "element " << i << " x=" << x[i] << " y=" << y[i];
  }
}

TEST(CodecRoundTrip, EveryEncodingAndSize) {
  for (Encoding e : kAllEncodings) {
    CodecOptions o;
    o.encoding = e;
    o.block_size = 64;
    o.chunk_elements = 1024;
    for (uint64_t n : {0ull, 1ull, 63ull, 65ull, 1024ull, 1025ull, 5000ull}) round_trip(n, o, 7);
    CodecOptions big;  // default options, a few default-sized chunks
    big.encoding = e;
    round_trip((1u << 20) * 2 + 333, big, 8);
  }
}

TEST(CodecRoundTrip, ZstdStageIsLossless) {
  for (Encoding e : kAllEncodings) {
    CodecOptions o;
    o.encoding = e;
    o.chunk_elements = 4096;
    o.zstd_level = 3;
    round_trip(20000, o, 9);
  }
}

TEST(CodecRoundTrip, Fp32IsExactAndQuantizedIsNot) {
  auto x = gaussian(1000, 3);
  Manifest m = flat_manifest(x.size());
  std::vector<float> y(x.size());
  decode(encode(x, m, {.encoding = Encoding::kFp32}), y, m.hash());
  EXPECT_EQ(std::memcmp(x.data(), y.data(), 4 * x.size()), 0);
  decode(encode(x, m, {.encoding = Encoding::kInt4}), y, m.hash());
  EXPECT_NE(std::memcmp(x.data(), y.data(), 4 * x.size()), 0);
}

TEST(CodecRoundTrip, RoundsToNearestEven) {
  // Block absmax 127 * 2^-6 -> scale exactly 2^-6 (a bf16 value): x = 2.5 steps -> level 2,
  // 3.5 steps -> level 4, -2.5 -> -2. bf16: 1 + 2^-8 (a tie) -> 1, 1 + 3*2^-8 -> 1 + 2^-6.
  std::vector<float> x(8, 0.0f);
  const float step = 0x1p-6f;
  x[0] = 127 * step, x[1] = 2.5f * step, x[2] = 3.5f * step, x[3] = -2.5f * step;
  Manifest m = flat_manifest(8);
  std::vector<float> y(8);
  decode(encode(x, m, {.encoding = Encoding::kInt8, .block_size = 8, .chunk_elements = 8}), y,
         m.hash());
  EXPECT_EQ(y[1], 2 * step);
  EXPECT_EQ(y[2], 4 * step);
  EXPECT_EQ(y[3], -2 * step);
  std::vector<float> b = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f};
  Manifest m2 = flat_manifest(2);
  std::vector<float> yb(2);
  decode(encode(b, m2, {.encoding = Encoding::kBf16}), yb, m2.hash());
  EXPECT_EQ(yb[0], 1.0f);
  EXPECT_EQ(yb[1], 1.0f + 0x1p-6f);
}

TEST(CodecRoundTrip, WireOverheadMeetsTargets) {
  const uint64_t n = 1u << 22;
  auto x = gaussian(n, 11);
  Manifest m = flat_manifest(n);
  const double int8 = double(encode(x, m, {.encoding = Encoding::kInt8}).size()) / n;
  const double int4 = double(encode(x, m, {.encoding = Encoding::kInt4}).size()) / n;
  EXPECT_LE(int8, 1.02);
  EXPECT_LE(int4, 0.52);
  EXPECT_GT(int8, 1.0);  // levels plus scales: the count includes everything
}

TEST(CodecRoundTrip, SimdAndScalarPathsAgreeBitwise) {
  if (std::string(kernels::kernel_name()) != "avx2") GTEST_SKIP() << "no AVX2 on this CPU";
  const uint64_t n = 10000 + 37;
  auto x = gaussian(n, 12);
  x[17] = 1e-40f;      // subnormal
  x[4000] = 60000.0f;  // large (fp16 still finite)
  Manifest m = flat_manifest(n);
  for (Encoding e : kAllEncodings) {
    for (uint32_t block : {8u, 64u, 136u}) {
      CodecOptions o{.encoding = e, .block_size = block, .chunk_elements = block * 20};
      auto fast = encode(x, m, o);
      std::vector<float> yf(n), ys(n), af(n, 1.0f), as(n, 1.0f);
      decode(fast, yf, m.hash());
      decode_accumulate(fast, af, 0.3f, m.hash());
      kernels::force_scalar_kernels(true);
      auto slow = encode(x, m, o);
      decode(slow, ys, m.hash());
      decode_accumulate(slow, as, 0.3f, m.hash());
      kernels::force_scalar_kernels(false);
      EXPECT_EQ(fast, slow) << encoding_name(e) << " block " << block;
      EXPECT_EQ(std::memcmp(yf.data(), ys.data(), 4 * n), 0) << encoding_name(e);
      EXPECT_EQ(std::memcmp(af.data(), as.data(), 4 * n), 0) << encoding_name(e);
    }
  }
}

TEST(CodecRoundTrip, DecodeAccumulateEqualsWeightedDecode) {
  const uint64_t n = 50000;
  Manifest m = flat_manifest(n);
  for (Encoding e : kAllEncodings) {
    for (int zstd : {0, 3}) {
      auto payload =
          encode(gaussian(n, 13), m, {.encoding = e, .zstd_level = zstd, .chunk_elements = 8192});
      std::vector<float> dec(n), acc = gaussian(n, 14), want = acc;
      decode(payload, dec, m.hash());
      const float w = 0.37f;
      for (uint64_t i = 0; i < n; ++i) want[i] = want[i] + w * dec[i];
      decode_accumulate(payload, acc, w, m.hash());
      EXPECT_EQ(std::memcmp(acc.data(), want.data(), 4 * n), 0)
          << encoding_name(e) << " zstd " << zstd;
    }
  }
}

// Payloads of 2^21 elements or more decode their chunks on several threads (issue 13 §1): the
// values, the fold, the scan and the error reported are those of a chunk-by-chunk decode.
TEST(CodecRoundTrip, LargePayloadsDecodeInParallelLikeChunkByChunk) {
  const uint64_t n = (uint64_t{1} << 21) + 12345;  // 17 chunks of 2^17, the last one short
  Manifest m = flat_manifest(n);
  const std::vector<float> x = gaussian(n, 21);
  for (Encoding e : {Encoding::kFp32, Encoding::kInt8}) {
    for (int zstd : {0, 3}) {
      auto payload = encode(x, m, {.encoding = e, .zstd_level = zstd, .chunk_elements = 1u << 17});
      std::vector<float> dec(n);
      decode(payload, dec, m.hash());
      if (e == Encoding::kFp32) EXPECT_EQ(dec, x) << "zstd " << zstd;
      // Chunk by chunk, by hand: each chunk's sum of squares in fp64, added in chunk order.
      double want = 0;
      for (uint64_t lo = 0; lo < n; lo += 1u << 17) {
        double ss = 0;
        for (uint64_t i = lo; i < std::min(n, lo + (1u << 17)); ++i) ss += static_cast<double>(dec[i]) * dec[i];
        want += ss;
      }
      const DecodedScan scan = decode_scan(payload, n, m.hash());
      EXPECT_EQ(scan.sum_squares, want) << encoding_name(e) << " zstd " << zstd;
      EXPECT_EQ(scan.first_non_finite, -1);
      std::vector<float> acc = gaussian(n, 22), expect = acc;
      for (uint64_t i = 0; i < n; ++i) expect[i] = expect[i] + 0.25f * dec[i];
      decode_accumulate(payload, acc, 0.25f, m.hash());
      EXPECT_EQ(std::memcmp(acc.data(), expect.data(), 4 * n), 0) << encoding_name(e) << " zstd " << zstd;
    }
  }
  // A damaged chunk in a large payload: the first one is named, whichever thread met it.
  auto payload = encode(x, m, {.encoding = Encoding::kInt8, .chunk_elements = 1u << 17});
  ASSERT_EQ(inspect(payload, n).chunks, 17u);
  EXPECT_THROW(decode_scan(payload, n + 1, m.hash()), DecodeError);  // the element count is checked
  payload[payload.size() - 100] ^= std::byte{1};  // in chunk 16
  payload[payload.size() / 2] ^= std::byte{1};    // in chunk 8
  std::vector<float> y(n);
  try {
    decode(payload, y, m.hash());
    ADD_FAILURE() << "a damaged payload decoded";
  } catch (const DecodeError& err) {
    EXPECT_EQ(err.kind(), DecodeError::Kind::kChunkChecksum);
    EXPECT_NE(std::string(err.what()).find("chunk 8:"), std::string::npos) << err.what();
  }
}

TEST(CodecRoundTrip, ZstdRecordedPerChunkAndSkippedWhenUseless) {
  const uint64_t n = 4 * 8192;
  Manifest m = flat_manifest(n);
  // Compressible: half the chunks all zero. Incompressible: uniform random int8 levels.
  auto x = gaussian(n, 15);
  std::fill(x.begin(), x.begin() + n / 2, 0.0f);
  CodecOptions o{.encoding = Encoding::kFp32, .zstd_level = 3, .chunk_elements = 8192};
  auto z = encode(x, m, o);
  EXPECT_GE(inspect(z, n).compressed_chunks, 2u);
  EXPECT_LT(z.size(), encode(x, m, {.encoding = Encoding::kFp32, .chunk_elements = 8192}).size());
  std::mt19937 rng(16);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : x) v = u(rng);
  auto q = encode(x, m, {.encoding = Encoding::kInt8, .zstd_level = 3, .chunk_elements = 8192});
  EXPECT_EQ(inspect(q, n).compressed_chunks, 0u);
  EXPECT_EQ(q, encode(x, m, {.encoding = Encoding::kInt8, .chunk_elements = 8192}));
  // Worker threads change nothing in the bytes.
  auto g = gaussian(n, 17);
  EXPECT_EQ(encode(g, m,
                   {.encoding = Encoding::kBf16,
                    .zstd_level = 3,
                    .zstd_workers = 3,
                    .chunk_elements = 4096}),
            encode(g, m,
                   {.encoding = Encoding::kBf16,
                    .zstd_level = 3,
                    .zstd_workers = 0,
                    .chunk_elements = 4096}));
}

TEST(CodecRoundTrip, RejectsNonFiniteAndOutOfRangeInput) {
  const uint64_t n = 300;
  Manifest m = flat_manifest(n);
  for (Encoding e : kAllEncodings) {
    for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
      auto x = gaussian(n, 18);
      x[217] = bad;
      try {
        encode(x, m, {.encoding = e});
        ADD_FAILURE() << "accepted " << bad << " as " << encoding_name(e);
      } catch (const EncodeError& err) {
        EXPECT_NE(std::string(err.what()).find("element 217"), std::string::npos) << err.what();
      }
    }
  }
  auto x = gaussian(n, 19);
  x[5] = 70000.0f;  // beyond fp16
  EXPECT_THROW(encode(x, m, {.encoding = Encoding::kFp16}), EncodeError);
  x[5] = 3.4e38f;  // int8 scale beyond 2^120
  EXPECT_THROW(encode(x, m, {.encoding = Encoding::kInt8}), EncodeError);
  // Feedback: an error leaves the residual untouched.
  std::vector<float> r = gaussian(n, 20), r0 = r;
  x[5] = std::nanf("");
  EXPECT_THROW(encode_with_feedback(
                   x, r, m, {.encoding = Encoding::kInt8, .block_size = 64, .chunk_elements = 64}),
               EncodeError);
  EXPECT_EQ(r, r0);
}

TEST(CodecRoundTrip, EncodingNamesAndOptionValidation) {
  for (Encoding e : kAllEncodings) EXPECT_EQ(parse_encoding(encoding_name(e)), e);
  EXPECT_THROW(parse_encoding("int3"), UserError);
  EXPECT_THROW(validate({.block_size = 100}), UserError);
  EXPECT_THROW(validate({.block_size = 128, .chunk_elements = 1000}), UserError);
  EXPECT_THROW(validate({.zstd_level = 23}), UserError);
  EXPECT_NO_THROW(validate({}));
  Manifest m = flat_manifest(3);
  std::vector<float> x(4);
  EXPECT_THROW(encode(x, m, {}), InvariantError);  // manifest says 3, span holds 4
}

}  // namespace
}  // namespace longhaul::transport

namespace longhaul::transport {
namespace {
TEST(CodecRoundTrip, EncodeIntoReusesABufferAndGivesTheSameBytes) {
  using namespace testing;
  Bytes buf;
  for (uint64_t n : {70000ull, 10ull, 30000ull}) {  // shrinking then growing
    auto x = gaussian(n, 30 + n);
    Manifest m = flat_manifest(n);
    for (int zstd : {0, 1}) {
      CodecOptions o{.encoding = Encoding::kInt8, .zstd_level = zstd, .chunk_elements = 8192};
      encode_into(x, m, o, buf);
      EXPECT_EQ(buf, encode(x, m, o)) << n;
    }
  }
}
}  // namespace
}  // namespace longhaul::transport
