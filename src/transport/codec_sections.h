// The sections of a chunk's raw bytes, for the byte-plane shuffle of the lossless stage
// (internal to codec_encode.cpp / codec_decode.cpp).
#pragma once

#include <array>
#include <cstdint>

#include "transport/byte_shuffle.h"
#include "transport/wire_format.h"

namespace longhaul::transport::sections {

struct Section {
  uint64_t offset = 0;  // bytes into the raw chunk
  uint64_t count = 0;   // values
  unsigned width = 1;   // bytes per value
};

inline std::array<Section, 2> chunk_sections(Encoding e, uint64_t n, uint32_t block) {
  const uint64_t nb = wire::block_count(n, block);
  switch (e) {
    case Encoding::kFp32:
      return {Section{0, n, 4}, Section{}};
    case Encoding::kBf16:
    case Encoding::kFp16:
      return {Section{0, n, 2}, Section{}};
    case Encoding::kInt8:
      return {Section{0, nb, 2}, Section{2 * nb, n, 1}};
    case Encoding::kInt4:
      return {Section{0, nb, 2}, Section{2 * nb, (n + 1) / 2, 1}};
  }
  return {};
}

inline void shuffle_chunk(Encoding e, uint64_t n, uint32_t block, const std::byte* raw,
                          std::byte* dst) {
  for (const Section& s : chunk_sections(e, n, block))
    byte_shuffle(raw + s.offset, dst + s.offset, s.count, s.width);
}

inline void unshuffle_chunk(Encoding e, uint64_t n, uint32_t block, const std::byte* src,
                            std::byte* raw) {
  for (const Section& s : chunk_sections(e, n, block))
    byte_unshuffle(src + s.offset, raw + s.offset, s.count, s.width);
}

}  // namespace longhaul::transport::sections
