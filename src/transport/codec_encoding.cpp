// Encoding names, option validation and DecodeError.
#include <string>

#include "common/error.h"
#include "transport/codec.h"
#include "transport/wire_format.h"

namespace longhaul::transport {

namespace {
constexpr std::string_view kNames[kEncodingCount] = {"fp32", "bf16", "fp16", "int8", "int4"};
}

Encoding parse_encoding(std::string_view s) {
  for (int i = 0; i < kEncodingCount; ++i)
    if (kNames[i] == s) return static_cast<Encoding>(i);
  throw UserError(detail::concat("unknown encoding '", s, "' (expected fp32|bf16|fp16|int8|int4)"));
}

std::string_view encoding_name(Encoding e) {
  auto i = static_cast<unsigned>(e);
  return i < kEncodingCount ? kNames[i] : std::string_view("invalid");
}

void validate(const CodecOptions& o) {
  if (static_cast<unsigned>(o.encoding) >= kEncodingCount)
    throw UserError(
        detail::concat("codec.encoding: invalid value ", static_cast<unsigned>(o.encoding)));
  if (o.block_size < wire::kMinBlock || o.block_size > wire::kMaxBlock || o.block_size % 8 != 0)
    throw UserError(detail::concat("codec.block_size = ", o.block_size,
                                   ": expected a multiple of 8 in [", wire::kMinBlock, ", ",
                                   wire::kMaxBlock, "]"));
  if (o.chunk_elements == 0 || o.chunk_elements > wire::kMaxChunkElements ||
      o.chunk_elements % o.block_size != 0)
    throw UserError(detail::concat("codec.chunk_elements = ", o.chunk_elements,
                                   ": expected a positive multiple of block_size (", o.block_size,
                                   ") up to ", wire::kMaxChunkElements));
  if (o.zstd_level < 0 || o.zstd_level > 22)
    throw UserError(
        detail::concat("codec.zstd_level = ", o.zstd_level, ": expected 0 (off) .. 22"));
  if (o.zstd_workers < 0 || o.zstd_workers > 256)
    throw UserError(detail::concat("codec.zstd_workers = ", o.zstd_workers, ": expected 0 .. 256"));
}

DecodeError::DecodeError(Kind kind, const std::string& what)
    : std::runtime_error(
          detail::concat("codec payload rejected (", decode_error_kind_name(kind), "): ", what)),
      kind_(kind) {}

std::string_view decode_error_kind_name(DecodeError::Kind k) {
  using K = DecodeError::Kind;
  switch (k) {
    case K::kTruncated:
      return "truncated";
    case K::kBadMagic:
      return "bad magic";
    case K::kBadVersion:
      return "bad version";
    case K::kBadHeader:
      return "bad header";
    case K::kTooLarge:
      return "too large";
    case K::kHeaderChecksum:
      return "header checksum";
    case K::kChunkLength:
      return "chunk length";
    case K::kChunkChecksum:
      return "chunk checksum";
    case K::kDecompress:
      return "decompress";
    case K::kBadValue:
      return "bad value";
    case K::kTrailingBytes:
      return "trailing bytes";
    case K::kManifestMismatch:
      return "manifest mismatch";
    case K::kSizeMismatch:
      return "size mismatch";
  }
  return "unknown";
}

}  // namespace longhaul::transport
