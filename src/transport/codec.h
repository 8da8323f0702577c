// The pseudo-gradient codec: a flat fp32 vector (described by a Manifest) <-> a versioned,
// self-describing, checksummed payload. Wire layout: transport/wire_format.h and README.md
// "Wire format".
//
// Contracts:
//  * Encoding is deterministic: the same input and options give the same bytes on every host
//    and every SIMD dispatch path. Decoding is deterministic too, so every replica that
//    decodes the same payload gets bitwise-identical floats.
//  * Rounding is round-to-nearest, ties to even, everywhere (fp32 -> bf16/fp16 and
//    x / scale -> integer level).
//  * int8: blocks of `block_size` elements, one scale per block, levels -127..127,
//    scale = absmax / 127 rounded UP to bf16 (so |level| <= 127 without clamping surprises).
//    int4: same with levels -7..7, two values per byte (element 2i in the low nibble, stored
//    as level + 8). Error bound per element: |x - decode(x)| <= scale / 2 (+ fp32 rounding).
//  * Non-finite input (NaN, +-Inf), or a value that overflows the target format (fp16 beyond
//    65504, bf16 rounding to Inf), makes encode throw EncodeError naming the element index;
//    nothing is returned. The coordinator rejects non-finite updates as well.
//  * Decoding validates every length, count, cap and checksum before it allocates or writes,
//    and throws DecodeError (typed) on anything wrong. Quantized scales are checked to be
//    finite and small enough that level * scale cannot overflow; fp32/bf16/fp16 values are
//    passed through as stored (callers check finiteness of what they apply).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "transport/bytes.h"
#include "transport/manifest.h"

namespace longhaul::transport {

enum class Encoding : uint8_t { kFp32 = 0, kBf16 = 1, kFp16 = 2, kInt8 = 3, kInt4 = 4 };
inline constexpr int kEncodingCount = 5;

// "fp32" | "bf16" | "fp16" | "int8" | "int4"; throws UserError naming the valid choices.
Encoding parse_encoding(std::string_view s);
std::string_view encoding_name(Encoding e);

struct CodecOptions {
  Encoding encoding = Encoding::kInt8;
  uint32_t block_size = 128;  // elements per scale (int8/int4); multiple of 8, 8..65536
  int zstd_level = 0;         // 0 = lossless stage off; 1..22 = byte shuffle + zstd
  int zstd_workers = 0;       // threads compressing chunks in parallel; 0 = caller's thread
  uint32_t chunk_elements = 1u << 20;  // elements per chunk; multiple of block_size, <= 2^26
};
// Throws UserError naming the field if an option is out of range.
void validate(const CodecOptions& o);

// Encode-side failure (bad input data); what() names the element index and value.
class EncodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class DecodeError : public std::runtime_error {
 public:
  enum class Kind {
    kTruncated,         // fewer bytes than the header / chunk table says
    kBadMagic,          // not a Longhaul codec payload
    kBadVersion,        // format version this build does not read
    kBadHeader,         // a header field out of range (encoding, block size, chunk size, flags)
    kTooLarge,          // element count above the caller's cap
    kHeaderChecksum,    // header + chunk table checksum mismatch
    kChunkLength,       // a chunk's stored length inconsistent with its element count
    kChunkChecksum,     // a chunk's bytes do not match its checksum
    kDecompress,        // zstd frame invalid or not exactly the expected size (bomb guard)
    kBadValue,          // a scale that is negative, non-finite or too large
    kTrailingBytes,     // bytes after the last chunk
    kManifestMismatch,  // payload built for another manifest
    kSizeMismatch,      // caller's output span has the wrong length
  };
  DecodeError(Kind kind, const std::string& what);
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};
std::string_view decode_error_kind_name(DecodeError::Kind k);

// Encodes x. m.total_elements() must equal x.size() (InvariantError otherwise).
Bytes encode(std::span<const float> x, const Manifest& m, const CodecOptions& o);
// Same bytes, written into `out` (resized; its capacity is reused across calls, which saves the
// page faults of a fresh multi-MiB allocation every round).
void encode_into(std::span<const float> x, const Manifest& m, const CodecOptions& o,
                 Bytes& out);

// Encodes y = x + residual; on return residual = y - decode(payload): what the decoder will
// not see, to be added to the next round's x (error feedback). residual.size() == x.size().
Bytes encode_with_feedback(std::span<const float> x, std::span<float> residual,
                                            const Manifest& m, const CodecOptions& o);

// Pulls x a chunk at a time: fills `out` with x[begin, begin + out.size()). Must give the same
// values every time it is called for the same range.
using ChunkSource = std::function<void(uint64_t begin, std::span<float> out)>;

// encode_with_feedback() with x never held whole: bitwise the same payload and residual, and
// the same contract (on EncodeError the residual is as before). x(begin, out) is called twice
// per chunk (quantize pass, then feedback pass), in order, on the caller's thread; peak extra
// memory is two chunks of floats. The site computes Δ = θ_r − θ_local this way, chunk by chunk.
Bytes encode_with_feedback_pulled(const ChunkSource& x, std::span<float> residual,
                                  const Manifest& m, const CodecOptions& o);

// Writes the raw quantized bytes of one chunk (int8/int4 only): elements [begin, begin + n),
// laid out as wire_format.h says: block_count(n, block_size) bf16 scale bits (little-endian u16
// each), then the levels (int8: n bytes, one signed level each; int4: ceil(n / 2) bytes, element
// 2i in the low nibble as level + 8, the high nibble of an odd last byte 0). `raw` holds exactly
// that many bytes.
using QuantizedChunkSource =
    std::function<void(uint32_t chunk, uint64_t begin, uint64_t n, std::span<std::byte> raw)>;

// A payload from blocks quantized elsewhere (e.g. on a GPU by inner::encode_with_feedback_on_device): the same
// chunking, byte shuffle + zstd and checksums as encode(), so a source that quantizes exactly as
// the codec does gives bitwise the bytes encode() would. o.encoding must be int8 or int4
// (InvariantError otherwise); a scale above the codec's maximum, or an int4 level byte out of
// range, throws EncodeError naming the block. Chunks are pulled in order on the caller's thread.
Bytes encode_prequantized(const QuantizedChunkSource& src, const Manifest& m,
                          const CodecOptions& o);

struct PayloadInfo {
  Encoding encoding;
  uint64_t elements;
  uint64_t manifest_hash;
  uint32_t chunks;
  uint16_t format_version;
  uint32_t block_size;
  uint32_t chunk_elements;
  uint32_t compressed_chunks;  // chunks stored shuffled + zstd
  uint64_t payload_bytes;      // total size, header included
};

// Header + chunk table only, fully validated (checksum, caps, lengths summing to the payload
// size). Throws DecodeError; kTooLarge when elements > max_elements. Allocates nothing.
PayloadInfo inspect(std::span<const std::byte> payload, uint64_t max_elements);

// out.size() must equal the payload's element count (kSizeMismatch otherwise) and the
// payload's manifest hash must equal expected_manifest_hash (kManifestMismatch).
// On error, `out` may be partly written.
void decode(std::span<const std::byte> payload, std::span<float> out,
            uint64_t expected_manifest_hash);

// out[i] += weight * decode(payload)[i], bitwise equal to decoding then accumulating, chunk by
// chunk: peak extra memory is one chunk's scratch (only for zstd chunks), never the whole
// vector. Header and every chunk checksum are verified before `out` is touched, so a damaged
// payload leaves `out` unchanged; only a payload with valid checksums but invalid content (a
// hostile sender: bad zstd frame, bad scale) can fail mid-way with `out` partly updated.
void decode_accumulate(std::span<const std::byte> payload, std::span<float> out, float weight,
                       uint64_t expected_manifest_hash);

// What a receiver checks before it lets a payload touch an accumulator, without holding the
// decoded vector: Σ decode(payload)[i]² over the finite values (fp64, summed per chunk in chunk
// order: deterministic) and the first non-finite value. Memory: one chunk of floats.
struct DecodedScan {
  double sum_squares = 0;
  int64_t first_non_finite = -1;  // element index, -1 when all are finite
  float non_finite_value = 0;
};
// The same validation as decode() (manifest hash, element count `elements`, checksums, caps),
// then the scan. Throws DecodeError as decode() does.
DecodedScan decode_scan(std::span<const std::byte> payload, uint64_t elements,
                        uint64_t expected_manifest_hash);

}  // namespace longhaul::transport
