// Hostile and damaged payloads: every corruption is rejected with the right DecodeError kind,
// before anything is allocated or (for decode_accumulate) written.
#include <gtest/gtest.h>
#include <zstd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "codec_util.h"
#include "transport/codec.h"
#include "transport/wire_format.h"

namespace longhaul::transport {
namespace {
using namespace testing;
using K = DecodeError::Kind;

constexpr uint64_t kN = 5000;

struct Fixture {
  Manifest m = flat_manifest(kN);
  std::vector<float> x = zero_every_other_block(gaussian(kN, 21));
  static std::vector<float> zero_every_other_block(std::vector<float> v) {  // so zstd has work
    for (size_t i = 0; i < v.size(); ++i)
      if (i % 128 < 64) v[i] = 0.0f;
    return v;
  }
  Bytes payload(int zstd = 0) const {
    return encode(x, m,
                  {.encoding = Encoding::kInt8,
                   .block_size = 64,
                   .zstd_level = zstd,
                   .chunk_elements = 1024});
  }
};

// The kind decode() throws, after checking inspect() agrees where it applies.
K decode_kind(const Bytes& p, uint64_t hash, uint64_t n = kN) {
  std::vector<float> out(n);
  try {
    decode(p, out, hash);
  } catch (const DecodeError& e) {
    return e.kind();
  }
  ADD_FAILURE() << "payload accepted";
  return K::kSizeMismatch;
}

void reseal(Bytes& p) {
  ASSERT_TRUE(wire::reseal_for_testing(p.data(), p.size()));
}

TEST(CodecCorruption, FlippedBitInEachChunkIsRejected) {
  Fixture f;
  for (int zstd : {0, 3}) {
    const auto good = f.payload(zstd);
    const PayloadInfo info = inspect(good, kN);
    ASSERT_EQ(info.chunks, 5u);
    if (zstd) {
      EXPECT_EQ(info.compressed_chunks, info.chunks);
    }
    uint64_t off = wire::table_end(info.chunks);
    for (uint32_t i = 0; i < info.chunks; ++i) {
      const uint32_t len = wire::read_chunk_entry(good.data(), i).stored_bytes;
      for (uint64_t at : {off, off + len / 2, off + len - 1}) {
        auto bad = good;
        bad[at] ^= std::byte{0x10};
        EXPECT_EQ(decode_kind(bad, f.m.hash()), K::kChunkChecksum)
            << "chunk " << i << " byte " << at;
        std::vector<float> acc(kN, 1.0f);
        EXPECT_THROW(decode_accumulate(bad, acc, 0.5f, f.m.hash()), DecodeError);
        EXPECT_EQ(acc, std::vector<float>(kN, 1.0f)) << "accumulator touched by a damaged payload";
      }
      off += len;
    }
  }
}

TEST(CodecCorruption, EveryHeaderBitFlipIsRejected) {
  Fixture f;
  const auto good = f.payload();
  const uint64_t tend = wire::table_end(inspect(good, kN).chunks);
  for (uint64_t byte = 0; byte < tend; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bad = good;
      bad[byte] ^= std::byte(1 << bit);
      EXPECT_THROW(inspect(bad, kN), DecodeError) << "byte " << byte << " bit " << bit;
      std::vector<float> out(kN);
      EXPECT_THROW(decode(bad, out, f.m.hash()), DecodeError) << "byte " << byte << " bit " << bit;
    }
  }
}

TEST(CodecCorruption, TruncationAndTrailingBytes) {
  Fixture f;
  const auto good = f.payload();
  for (size_t len = 0; len < good.size(); len += (len < 200 ? 1 : 97)) {
    Bytes cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    try {
      inspect(cut, kN);
      ADD_FAILURE() << "truncated to " << len << " accepted";
    } catch (const DecodeError& e) {
      // Cutting inside the magic leaves "not our payload"; anything else is "truncated".
      if (len >= 4) {
        EXPECT_EQ(e.kind(), K::kTruncated) << len << ": " << e.what();
      }
    }
  }
  auto longer = good;
  longer.push_back(std::byte{0});
  EXPECT_EQ(decode_kind(longer, f.m.hash()), K::kTrailingBytes);
}

TEST(CodecCorruption, WrongMagicVersionManifestOrSize) {
  Fixture f;
  auto bad = f.payload();
  bad[0] = std::byte{'X'};
  EXPECT_EQ(decode_kind(bad, f.m.hash()), K::kBadMagic);
  bad = f.payload();
  bad[4] = std::byte{2};
  EXPECT_EQ(decode_kind(bad, f.m.hash()), K::kBadVersion);
  EXPECT_EQ(decode_kind(f.payload(), f.m.hash() ^ 1), K::kManifestMismatch);
  EXPECT_EQ(decode_kind(f.payload(), f.m.hash(), kN - 1), K::kSizeMismatch);
  EXPECT_EQ(decode_kind(Bytes(3), f.m.hash()), K::kTruncated);
}

TEST(CodecCorruption, LyingFieldsPastTheChecksumAreCaught) {
  Fixture f;
  const auto good = f.payload();
  auto forge = [&](auto edit) {
    auto p = good;
    edit(p.data());
    reseal(p);
    return p;
  };
  using wire::put_u32;
  using wire::put_u64;
  // Chunk length one more / one less than its elements need.
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { put_u32(p + 40, wire::get_u32(p + 40) + 1); }),
                        f.m.hash()),
            K::kChunkLength);
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { put_u32(p + 40, wire::get_u32(p + 40) - 1); }),
                        f.m.hash()),
            K::kChunkLength);
  // Element count: one more (chunk lengths no longer add up), absurd (cap), chunk count lie.
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { put_u64(p + 16, kN + 1); }), f.m.hash()),
            K::kChunkLength);
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { put_u64(p + 16, 1ull << 50); }), f.m.hash()),
            K::kTooLarge);
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { put_u64(p + 16, ~0ull); }), f.m.hash()),
            K::kTooLarge);
  try {
    inspect(good, kN - 1);
    ADD_FAILURE() << "cap ignored";
  } catch (const DecodeError& e) {
    EXPECT_EQ(e.kind(), K::kTooLarge);
  }
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { put_u64(p + 16, 100); }), f.m.hash()),
            K::kBadHeader);
  // Header fields out of range.
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { p[6] = std::byte{9}; }), f.m.hash()),
            K::kBadHeader);
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { put_u32(p + 8, 0); }), f.m.hash()), K::kBadHeader);
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { put_u32(p + 8, 60); }), f.m.hash()),
            K::kBadHeader);
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { put_u32(p + 12, 0); }), f.m.hash()),
            K::kBadHeader);
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { p[7] = std::byte{1}; }), f.m.hash()),
            K::kBadHeader);
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { p[40 + 4] = std::byte{4}; }), f.m.hash()),
            K::kBadHeader);
  // An uncompressed chunk claiming zstd (its stored length then equals, not undercuts, the raw
  // size).
  EXPECT_EQ(decode_kind(forge([](std::byte* p) { p[40 + 4] = std::byte{1}; }), f.m.hash()),
            K::kChunkLength);
  // A scale that is NaN (0xffc0) or negative, with valid checksums.
  const uint64_t c0 = wire::table_end(5);
  EXPECT_EQ(decode_kind(forge([&](std::byte* p) { put_u32(p + c0, 0xffc0ffc0u); }), f.m.hash()),
            K::kBadValue);
  EXPECT_EQ(
      decode_kind(forge([&](std::byte* p) { wire::put_u16(p + c0 + 6, 0xbf80); }), f.m.hash()),
      K::kBadValue);
}

// Replaces chunk 0 of a zstd payload by `frame` (must be shorter than the chunk's raw size).
Bytes with_frame(const Bytes& good,
                                  const Bytes& frame) {
  const uint64_t tend = wire::table_end(wire::get_u32(good.data() + 32));
  const uint32_t len0 = wire::read_chunk_entry(good.data(), 0).stored_bytes;
  Bytes p(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(tend));
  p.insert(p.end(), frame.begin(), frame.end());
  p.insert(p.end(), good.begin() + static_cast<std::ptrdiff_t>(tend + len0), good.end());
  wire::put_u32(p.data() + 40, static_cast<uint32_t>(frame.size()));
  p[44] = std::byte{wire::kChunkZstd};
  EXPECT_TRUE(wire::reseal_for_testing(p.data(), p.size()));
  return p;
}

Bytes zstd_frame(size_t content_bytes, bool with_size) {
  Bytes src(content_bytes, std::byte{0}), dst(ZSTD_compressBound(content_bytes));
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size ? 1 : 0);
  size_t n = ZSTD_compress2(c, dst.data(), dst.size(), src.data(), src.size());
  ZSTD_freeCCtx(c);
  dst.resize(n);
  return dst;
}

TEST(CodecCorruption, ZstdBombsAndBadFramesAreRejected) {
  Fixture f;
  const auto good = f.payload(3);
  const uint64_t raw0 = wire::raw_chunk_bytes(Encoding::kInt8, 1024, 64);
  EXPECT_EQ(decode_kind(with_frame(good, zstd_frame(1u << 24, true)), f.m.hash()),
            K::kDecompress);  // bomb: 16 MiB in < 1 KiB
  EXPECT_EQ(decode_kind(with_frame(good, zstd_frame(raw0 + 1, true)), f.m.hash()), K::kDecompress);
  EXPECT_EQ(decode_kind(with_frame(good, zstd_frame(raw0 - 1, true)), f.m.hash()), K::kDecompress);
  EXPECT_EQ(decode_kind(with_frame(good, zstd_frame(raw0, false)), f.m.hash()),
            K::kDecompress);  // no size
  auto two = zstd_frame(raw0 / 2, true);
  two.insert(two.end(), two.begin(), two.end());
  EXPECT_EQ(decode_kind(with_frame(good, two), f.m.hash()), K::kDecompress);  // two frames
  auto garbage = zstd_frame(raw0, true);
  for (size_t i = 8; i < garbage.size(); ++i) garbage[i] = std::byte(i * 37);
  EXPECT_EQ(decode_kind(with_frame(good, garbage), f.m.hash()), K::kDecompress);
  // And the right size decodes (the frame decompresses to zeros: scales 0 are valid).
  std::vector<float> out(kN);
  EXPECT_NO_THROW(decode(with_frame(good, zstd_frame(raw0, true)), out, f.m.hash()));
}

// Every seed of the fuzz corpus is either decoded or rejected with a DecodeError.
TEST(CodecCorruption, SeedCorpusDecodesOrIsRejected) {
  const std::filesystem::path dir =
      std::filesystem::path(LONGHAUL_SOURCE_DIR) / "tests/data/codec_seeds";
  int seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Bytes p(s.size());
    std::memcpy(p.data(), s.data(), s.size());
    ++seeds;
    try {
      PayloadInfo info = inspect(p, 1u << 24);
      std::vector<float> out(info.elements);
      decode(p, out, info.manifest_hash);
    } catch (const DecodeError&) {
    }
  }
  EXPECT_GE(seeds, 10);
}

}  // namespace
}  // namespace longhaul::transport
