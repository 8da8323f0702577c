// Helpers for the codec tests: deterministic inputs and a flat manifest.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "transport/codec.h"

namespace longhaul::transport::testing {

inline Manifest flat_manifest(uint64_t n) {
  Manifest m;
  m.add("flat", {static_cast<int64_t>(n)});
  return m;
}

inline std::vector<float> gaussian(uint64_t n, uint32_t seed, float stddev = 1e-3f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}

inline constexpr Encoding kAllEncodings[] = {Encoding::kFp32, Encoding::kBf16, Encoding::kFp16,
                                             Encoding::kInt8, Encoding::kInt4};

// Calls fn(e, block, zstd, n) for every combination of the lists, each under a SCOPED_TRACE
// naming it; stops at the first fatal failure (an ASSERT inside fn only leaves fn).
template <class Encodings, class Fn>
void for_each_codec_case(const Encodings& encodings, std::initializer_list<uint32_t> blocks,
                         std::initializer_list<int> zstds, std::initializer_list<uint64_t> ns, Fn fn) {
  for (Encoding e : encodings)
    for (uint32_t block : blocks)
      for (int zstd : zstds)
        for (uint64_t n : ns) {
          SCOPED_TRACE(std::string(encoding_name(e)) + " block " + std::to_string(block) + " zstd " +
                       std::to_string(zstd) + " n " + std::to_string(n));
          fn(e, block, zstd, n);
          if (::testing::Test::HasFatalFailure()) return;
        }
}

inline double rms(const std::vector<float>& a) {
  double s = 0;
  for (float v : a) s += double(v) * v;
  return a.empty() ? 0.0 : std::sqrt(s / double(a.size()));
}

}  // namespace longhaul::transport::testing
