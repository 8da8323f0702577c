// Fingerprint of a flat fp32 parameter vector: xxh64 (seed 0) over its bytes in memory order
// (little-endian hosts). Equal hashes <=> bitwise-identical replicas (up to xxh64 collisions).
#pragma once

#include <cstdint>
#include <span>

#include <xxhash.h>

namespace longhaul::outer {

inline uint64_t param_hash(std::span<const float> theta) {
  return XXH64(theta.data(), theta.size_bytes(), 0);
}

}  // namespace longhaul::outer
