// Byte layout of a codec payload (all integers little-endian), format version 1:
//
//   offset size  field
//   0      4     magic: the bytes "LHCX"
//   4      2     format version (1)
//   6      1     encoding (Encoding: 0 fp32, 1 bf16, 2 fp16, 3 int8, 4 int4)
//   7      1     flags (0; reserved)
//   8      4     block size (elements per scale; int8/int4 only, else 0)
//   12     4     chunk elements (every chunk but the last holds exactly this many)
//   16     8     element count
//   24     8     manifest hash (Manifest::hash())
//   32     4     chunk count (= ceil(elements / chunk elements))
//   36     4     reserved (0)
//   40     16*C  chunk table: per chunk u32 stored bytes, u8 flags (bit 0: shuffled+zstd),
//                3 bytes reserved (0), u64 XXH3-64 of the stored bytes
//   40+16C 8     XXH3-64 of bytes [0, 40+16C) (header + chunk table)
//   48+16C ...   the chunks' stored bytes, back to back, in order
//
// A chunk's raw (pre-zstd) bytes for n elements:
//   fp32 4n | bf16 2n | fp16 2n | int8: 2*ceil(n/B) bf16 scales, then n int8 levels
//   int4: 2*ceil(n/B) bf16 scales, then ceil(n/2) bytes (element 2i low nibble, level + 8)
// A zstd chunk is one zstd frame with its content size set to exactly the raw size; its
// content is the raw bytes with each section byte-plane shuffled (plane k = byte k of each
// value: widths fp32 4, bf16/fp16 2, scales 2, levels 1).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "transport/codec.h"

namespace longhaul::transport::wire {

static_assert(std::endian::native == std::endian::little, "codec assumes a little-endian host");

inline constexpr uint8_t kMagic[4] = {'L', 'H', 'C', 'X'};
inline constexpr uint16_t kFormatVersion = 1;
inline constexpr size_t kHeaderBytes = 40;
inline constexpr size_t kChunkEntryBytes = 16;
inline constexpr size_t kHeaderChecksumBytes = 8;
inline constexpr uint8_t kChunkZstd = 1;

inline constexpr uint32_t kMinBlock = 8;
inline constexpr uint32_t kMaxBlock = 65536;
inline constexpr uint32_t kMaxChunkElements = 1u << 26;  // 256 MiB of fp32 raw per chunk, max
inline constexpr uint64_t kMaxElements = 1ull << 40;     // absolute cap, whatever the caller's

struct Header {
  uint16_t version = kFormatVersion;
  Encoding encoding = Encoding::kInt8;
  uint8_t flags = 0;
  uint32_t block_size = 0;
  uint32_t chunk_elements = 0;
  uint64_t elements = 0;
  uint64_t manifest_hash = 0;
  uint32_t chunks = 0;
};

struct ChunkEntry {
  uint32_t stored_bytes = 0;
  uint8_t flags = 0;
  uint64_t checksum = 0;
};

inline bool is_quantized(Encoding e) { return e == Encoding::kInt8 || e == Encoding::kInt4; }

inline uint64_t table_end(uint32_t chunks) {
  return kHeaderBytes + kChunkEntryBytes * uint64_t{chunks} + kHeaderChecksumBytes;
}

// Elements in chunk i (i < chunks).
inline uint64_t chunk_elements_at(const Header& h, uint32_t i) {
  uint64_t begin = uint64_t{i} * h.chunk_elements;
  uint64_t left = h.elements - begin;
  return left < h.chunk_elements ? left : h.chunk_elements;
}

// Number of scales (blocks) for n elements.
inline uint64_t block_count(uint64_t n, uint32_t block) {
  return block ? (n + block - 1) / block : 0;
}

// Raw (unshuffled, uncompressed) bytes of a chunk of n elements. n <= kMaxChunkElements, so
// no overflow.
inline uint64_t raw_chunk_bytes(Encoding e, uint64_t n, uint32_t block) {
  switch (e) {
    case Encoding::kFp32:
      return 4 * n;
    case Encoding::kBf16:
    case Encoding::kFp16:
      return 2 * n;
    case Encoding::kInt8:
      return 2 * block_count(n, block) + n;
    case Encoding::kInt4:
      return 2 * block_count(n, block) + (n + 1) / 2;
  }
  return 0;
}

inline void put_u16(std::byte* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void put_u32(std::byte* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void put_u64(std::byte* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint16_t get_u16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t get_u32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t get_u64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Writes header fields into p[0, kHeaderBytes).
void write_header(std::byte* p, const Header& h);
// Writes chunk entry i into the table of a payload whose header starts at p.
void write_chunk_entry(std::byte* p, uint32_t i, const ChunkEntry& c);
ChunkEntry read_chunk_entry(const std::byte* p, uint32_t i);
// Computes and writes the header+table checksum (after write_header / write_chunk_entry).
void seal_header(std::byte* p, uint32_t chunks);

// Parses and validates header + chunk table (see inspect()); returns the header.
Header parse_header(const std::byte* p, size_t size, uint64_t max_elements);

// Testing / fuzzing aid: recomputes every chunk checksum and the header checksum of a payload
// whose header and table are readable, so tests can forge "lying" fields that pass the
// checksums and must be caught by the structural checks. Returns false if unreadable.
bool reseal_for_testing(std::byte* p, size_t size);

}  // namespace longhaul::transport::wire
