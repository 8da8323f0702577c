// Byte-plane shuffle for the lossless stage: n values of `width` bytes are rearranged so that
// plane k holds byte k of every value (dst[k * n + i] = src[i * width + k]). Exponent bytes
// of floats then sit together and zstd finds them. unshuffle() is the exact inverse.
// width 1 is a plain copy. src and dst must not overlap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace longhaul::transport {

void byte_shuffle(const std::byte* src, std::byte* dst, uint64_t n, unsigned width);
void byte_unshuffle(const std::byte* src, std::byte* dst, uint64_t n, unsigned width);

}  // namespace longhaul::transport
