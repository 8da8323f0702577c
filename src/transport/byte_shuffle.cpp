#include "transport/byte_shuffle.h"

#include <cstring>

namespace longhaul::transport {

namespace {
template <unsigned W>
void shuffle_w(const std::byte* src, std::byte* dst, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i)
    for (unsigned k = 0; k < W; ++k) dst[k * n + i] = src[i * W + k];
}
template <unsigned W>
void unshuffle_w(const std::byte* src, std::byte* dst, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i)
    for (unsigned k = 0; k < W; ++k) dst[i * W + k] = src[k * n + i];
}
}  // namespace

void byte_shuffle(const std::byte* src, std::byte* dst, uint64_t n, unsigned width) {
  switch (width) {
    case 2:
      shuffle_w<2>(src, dst, n);
      return;
    case 4:
      shuffle_w<4>(src, dst, n);
      return;
    default:
      for (uint64_t i = 0; i < n; ++i)
        for (unsigned k = 0; k < width; ++k) dst[k * n + i] = src[i * width + k];
  }
}

void byte_unshuffle(const std::byte* src, std::byte* dst, uint64_t n, unsigned width) {
  switch (width) {
    case 2:
      unshuffle_w<2>(src, dst, n);
      return;
    case 4:
      unshuffle_w<4>(src, dst, n);
      return;
    default:
      for (uint64_t i = 0; i < n; ++i)
        for (unsigned k = 0; k < width; ++k) dst[i * width + k] = src[k * n + i];
  }
}

}  // namespace longhaul::transport
