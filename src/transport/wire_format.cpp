// Header and chunk table: writing, sealing, and the validating parser behind inspect().
#include "transport/wire_format.h"

#include <xxhash.h>

#include "common/error.h"

namespace longhaul::transport::wire {

namespace {
using K = DecodeError::Kind;

[[noreturn]] void fail(K kind, const std::string& what) { throw DecodeError(kind, what); }

std::byte* entry_at(std::byte* p, uint32_t i) {
  return p + kHeaderBytes + kChunkEntryBytes * uint64_t{i};
}
const std::byte* entry_at(const std::byte* p, uint32_t i) {
  return p + kHeaderBytes + kChunkEntryBytes * uint64_t{i};
}
}  // namespace

void write_header(std::byte* p, const Header& h) {
  std::memcpy(p, kMagic, 4);
  put_u16(p + 4, h.version);
  p[6] = static_cast<std::byte>(h.encoding);
  p[7] = static_cast<std::byte>(h.flags);
  put_u32(p + 8, h.block_size);
  put_u32(p + 12, h.chunk_elements);
  put_u64(p + 16, h.elements);
  put_u64(p + 24, h.manifest_hash);
  put_u32(p + 32, h.chunks);
  put_u32(p + 36, 0);
}

void write_chunk_entry(std::byte* p, uint32_t i, const ChunkEntry& c) {
  std::byte* e = entry_at(p, i);
  put_u32(e, c.stored_bytes);
  e[4] = static_cast<std::byte>(c.flags);
  e[5] = e[6] = e[7] = std::byte{0};
  put_u64(e + 8, c.checksum);
}

ChunkEntry read_chunk_entry(const std::byte* p, uint32_t i) {
  const std::byte* e = entry_at(p, i);
  ChunkEntry c;
  c.stored_bytes = get_u32(e);
  c.flags = static_cast<uint8_t>(e[4]);
  c.checksum = get_u64(e + 8);
  return c;
}

void seal_header(std::byte* p, uint32_t chunks) {
  const uint64_t n = kHeaderBytes + kChunkEntryBytes * uint64_t{chunks};
  put_u64(p + n, XXH3_64bits(p, n));
}

Header parse_header(const std::byte* p, size_t size, uint64_t max_elements) {
  if (size < kHeaderBytes)
    fail(K::kTruncated,
         detail::concat(size, " bytes, shorter than the ", kHeaderBytes, "-byte header"));
  if (std::memcmp(p, kMagic, 4) != 0) fail(K::kBadMagic, "magic is not \"LHCX\"");
  Header h;
  h.version = get_u16(p + 4);
  if (h.version != kFormatVersion)
    fail(K::kBadVersion,
         detail::concat("format version ", h.version, ", this build reads ", kFormatVersion));
  h.chunks = get_u32(p + 32);
  const uint64_t tend = table_end(h.chunks);
  if (size < tend)
    fail(K::kTruncated, detail::concat(size, " bytes, shorter than the header and chunk table of ",
                                       h.chunks, " chunks (", tend, " bytes)"));
  if (XXH3_64bits(p, tend - kHeaderChecksumBytes) != get_u64(p + tend - kHeaderChecksumBytes))
    fail(K::kHeaderChecksum, "header/chunk table checksum mismatch");

  const uint8_t enc = static_cast<uint8_t>(p[6]);
  if (enc >= kEncodingCount)
    fail(K::kBadHeader, detail::concat("encoding ", unsigned{enc}, " unknown"));
  h.encoding = static_cast<Encoding>(enc);
  h.flags = static_cast<uint8_t>(p[7]);
  if (h.flags != 0 || get_u32(p + 36) != 0) fail(K::kBadHeader, "reserved header bits set");
  h.block_size = get_u32(p + 8);
  h.chunk_elements = get_u32(p + 12);
  h.elements = get_u64(p + 16);
  h.manifest_hash = get_u64(p + 24);
  if (is_quantized(h.encoding)) {
    if (h.block_size < kMinBlock || h.block_size > kMaxBlock || h.block_size % 8 != 0)
      fail(K::kBadHeader, detail::concat("block size ", h.block_size, " not a multiple of 8 in [",
                                         kMinBlock, ", ", kMaxBlock, "]"));
  } else if (h.block_size != 0) {
    fail(K::kBadHeader, detail::concat("block size ", h.block_size, " for an unblocked encoding"));
  }
  if (h.chunk_elements == 0 || h.chunk_elements > kMaxChunkElements ||
      (h.block_size && h.chunk_elements % h.block_size != 0))
    fail(K::kBadHeader,
         detail::concat("chunk elements ", h.chunk_elements, " not a multiple of block size ",
                        h.block_size, " in [1, ", kMaxChunkElements, "]"));
  const uint64_t cap = max_elements < kMaxElements ? max_elements : kMaxElements;
  if (h.elements > cap)
    fail(K::kTooLarge, detail::concat("element count ", h.elements, " exceeds the cap ", cap));
  const uint64_t want_chunks = (h.elements + h.chunk_elements - 1) / h.chunk_elements;
  if (want_chunks != h.chunks)
    fail(K::kBadHeader,
         detail::concat("chunk count ", h.chunks, " but ", h.elements, " elements in chunks of ",
                        h.chunk_elements, " need ", want_chunks));

  uint64_t total = tend;
  for (uint32_t i = 0; i < h.chunks; ++i) {
    const std::byte* e = entry_at(p, i);
    const ChunkEntry c = read_chunk_entry(p, i);
    if ((c.flags & ~kChunkZstd) != 0 || e[5] != std::byte{0} || e[6] != std::byte{0} ||
        e[7] != std::byte{0})
      fail(K::kBadHeader, detail::concat("chunk ", i, ": reserved flag bits set"));
    const uint64_t raw = raw_chunk_bytes(h.encoding, chunk_elements_at(h, i), h.block_size);
    const bool ok = (c.flags & kChunkZstd) ? (c.stored_bytes > 0 && c.stored_bytes < raw)
                                           : c.stored_bytes == raw;
    if (!ok)
      fail(K::kChunkLength,
           detail::concat("chunk ", i, ": stored length ", c.stored_bytes, " but its ",
                          chunk_elements_at(h, i), " elements take ", raw, " bytes",
                          (c.flags & kChunkZstd) ? " raw (zstd must be smaller)" : ""));
    total += c.stored_bytes;
  }
  if (size < total)
    fail(K::kTruncated, detail::concat(size, " bytes, but header and chunks take ", total));
  if (size > total)
    fail(K::kTrailingBytes, detail::concat(size - total, " bytes after the last chunk"));
  return h;
}

bool reseal_for_testing(std::byte* p, size_t size) {
  if (size < kHeaderBytes) return false;
  const uint32_t chunks = get_u32(p + 32);
  const uint64_t tend = table_end(chunks);
  if (size < tend) return false;
  uint64_t off = tend;
  for (uint32_t i = 0; i < chunks; ++i) {
    ChunkEntry c = read_chunk_entry(p, i);
    const uint64_t len = c.stored_bytes;
    if (off + len > size) break;
    c.checksum = XXH3_64bits(p + off, len);
    put_u64(entry_at(p, i) + 8, c.checksum);
    off += len;
  }
  seal_header(p, chunks);
  return true;
}

}  // namespace longhaul::transport::wire
