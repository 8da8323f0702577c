// Helpers for the codec tests: deterministic inputs and a flat manifest.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
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

inline double rms(const std::vector<float>& a) {
  double s = 0;
  for (float v : a) s += double(v) * v;
  return a.empty() ? 0.0 : std::sqrt(s / double(a.size()));
}

}  // namespace longhaul::transport::testing
