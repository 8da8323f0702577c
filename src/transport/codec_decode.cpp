// inspect(), decode() and decode_accumulate(): validate header and table (wire::parse_header),
// then per chunk: checksum, optional zstd (size-checked) + unshuffle, dequantize.
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include "common/error.h"
#include "transport/codec.h"
#include "transport/codec_sections.h"
#include "transport/quantize.h"
#include "transport/wire_format.h"

namespace longhaul::transport {

namespace {
using K = DecodeError::Kind;

struct ZstdDCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

void check_chunk_sum(const std::byte* p, uint64_t len, uint64_t want, uint32_t i) {
  if (XXH3_64bits(p, len) != want)
    throw DecodeError(K::kChunkChecksum, detail::concat("chunk ", i, ": checksum mismatch"));
}

// mode: write decode(payload) into out; accumulate out += weight * decode(payload); or scan
// (out empty, `elements` values expected): decode chunk by chunk into one chunk's scratch and
// fold each chunk into *scan.
enum class Mode { kWrite, kAccumulate, kScan };

// One decoding thread's state: a zstd context and one chunk's scratch, allocated on first use.
struct ChunkScratch {
  Bytes inflated, unshuffled;
  std::unique_ptr<ZSTD_DCtx, ZstdDCtxFree> dctx;
  std::vector<float> values;  // kScan: one chunk's decoded values
};

// Chunks are decoded in parallel (disjoint output ranges; kScan sums each chunk on its own and
// adds the chunk sums in chunk order), so results are the same for any thread count. An error
// reported is that of the lowest-numbered failing chunk, as a serial decode would report it.
constexpr uint64_t kParallelMinElements = uint64_t{1} << 21;

void decode_impl(std::span<const std::byte> payload, std::span<float> out, Mode mode, float weight,
                 uint64_t expected_hash, uint64_t elements = 0, DecodedScan* scan = nullptr) {
  const bool acc = mode != Mode::kWrite;  // checksums first: nothing is touched or scanned on damage
  if (mode != Mode::kScan) elements = out.size();
  const std::byte* p = payload.data();
  const wire::Header h = wire::parse_header(p, payload.size(), wire::kMaxElements);
  if (h.manifest_hash != expected_hash)
    throw DecodeError(K::kManifestMismatch,
                      detail::concat("payload manifest hash ", std::hex, h.manifest_hash,
                                     ", expected ", expected_hash));
  if (h.elements != elements)
    throw DecodeError(K::kSizeMismatch, detail::concat("payload has ", h.elements,
                                                       " elements, the output holds ", elements));
  const uint64_t tend = wire::table_end(h.chunks);
  std::vector<uint64_t> offsets(h.chunks);  // where each chunk's stored bytes start
  {
    uint64_t off = tend;
    for (uint32_t i = 0; i < h.chunks; ++i) {
      const wire::ChunkEntry c = wire::read_chunk_entry(p, i);
      offsets[i] = off;
      if (acc) check_chunk_sum(p + off, c.stored_bytes, c.checksum, i);  // a damaged payload must not half-update
      off += c.stored_bytes;
    }
  }
  std::vector<double> chunk_squares(mode == Mode::kScan ? h.chunks : 0, 0.0);
  std::vector<int64_t> chunk_bad(mode == Mode::kScan ? h.chunks : 0, -1);
  std::vector<float> chunk_bad_value(mode == Mode::kScan ? h.chunks : 0, 0.0f);

  auto decode_chunk_at = [&](uint32_t i, ChunkScratch& z) {
    const wire::ChunkEntry c = wire::read_chunk_entry(p, i);
    const std::byte* src = p + offsets[i];
    if (!acc) check_chunk_sum(src, c.stored_bytes, c.checksum, i);
    const uint64_t n = wire::chunk_elements_at(h, i);
    const uint64_t raw = wire::raw_chunk_bytes(h.encoding, n, h.block_size);
    const std::byte* rawp = src;
    if (c.flags & wire::kChunkZstd) {
      // Bomb guard: the frame must declare exactly the raw size and span exactly the stored bytes.
      const unsigned long long fcs = ZSTD_getFrameContentSize(src, c.stored_bytes);
      if (fcs != raw)
        throw DecodeError(K::kDecompress,
                          detail::concat("chunk ", i, ": zstd frame content size ",
                                         static_cast<long long>(fcs), ", expected ", raw));
      const size_t fsz = ZSTD_findFrameCompressedSize(src, c.stored_bytes);
      if (ZSTD_isError(fsz) || fsz != c.stored_bytes)
        throw DecodeError(K::kDecompress,
                          detail::concat("chunk ", i, ": not exactly one zstd frame"));
      if (!z.dctx) {
        z.dctx.reset(ZSTD_createDCtx());
        LH_CHECK(z.dctx != nullptr, "ZSTD_createDCtx failed");
        ZSTD_DCtx_setParameter(z.dctx.get(), ZSTD_d_windowLogMax, 28);  // >= log2(max raw chunk)
      }
      // Scratch grows to the largest chunk actually present: bounded by the caller's output
      // size, never by a header's claimed chunk size alone.
      if (z.inflated.size() < raw) {
        z.inflated.resize(raw);
        z.unshuffled.resize(raw);
      }
      const size_t got = ZSTD_decompressDCtx(z.dctx.get(), z.inflated.data(), raw, src, c.stored_bytes);
      if (ZSTD_isError(got) || got != raw)
        throw DecodeError(
            K::kDecompress,
            detail::concat("chunk ", i,
                           ": zstd: ", ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame"));
      sections::unshuffle_chunk(h.encoding, n, h.block_size, z.inflated.data(), z.unshuffled.data());
      rawp = z.unshuffled.data();
    }
    float* dst;
    if (mode == Mode::kScan) {
      if (z.values.size() < n) z.values.resize(n);
      dst = z.values.data();
    } else {
      dst = out.data() + uint64_t{i} * h.chunk_elements;
    }
    const int64_t bad =
        kernels::decode_chunk(h.encoding, rawp, n, h.block_size, dst, mode == Mode::kAccumulate, weight);
    if (bad != kernels::kOk) {
      uint16_t sb;
      std::memcpy(&sb, rawp + 2 * bad, 2);
      throw DecodeError(K::kBadValue,
                        detail::concat("chunk ", i, " block ", bad, ": scale bits 0x", std::hex, sb,
                                       " negative, non-finite or above 2^120"));
    }
    if (mode == Mode::kScan) {
      double ss = 0;
      for (uint64_t j = 0; j < n; ++j) {
        const float v = dst[j];
        if (!std::isfinite(v)) {
          if (chunk_bad[i] < 0) {
            chunk_bad[i] = static_cast<int64_t>(uint64_t{i} * h.chunk_elements + j);
            chunk_bad_value[i] = v;
          }
          continue;
        }
        ss += static_cast<double>(v) * v;
      }
      chunk_squares[i] = ss;
    }
  };

  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const unsigned threads = h.elements >= kParallelMinElements ? std::min<unsigned>(hw, h.chunks) : 1;
  if (threads <= 1) {
    ChunkScratch z;
    for (uint32_t i = 0; i < h.chunks; ++i) decode_chunk_at(i, z);
  } else {
    std::vector<std::exception_ptr> errors(h.chunks);
    auto work = [&](unsigned t) {
      ChunkScratch z;
      for (uint32_t i = t; i < h.chunks; i += threads) {
        try {
          decode_chunk_at(i, z);
        } catch (...) {
          errors[i] = std::current_exception();
          return;  // this thread's later chunks are not needed: the lowest error is reported
        }
      }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    for (const auto& e : errors)
      if (e) std::rethrow_exception(e);
  }
  if (mode == Mode::kScan) {
    *scan = DecodedScan{};
    for (uint32_t i = 0; i < h.chunks; ++i) {
      scan->sum_squares += chunk_squares[i];
      if (scan->first_non_finite < 0 && chunk_bad[i] >= 0) {
        scan->first_non_finite = chunk_bad[i];
        scan->non_finite_value = chunk_bad_value[i];
      }
    }
  }
}

}  // namespace

PayloadInfo inspect(std::span<const std::byte> payload, uint64_t max_elements) {
  const wire::Header h = wire::parse_header(payload.data(), payload.size(), max_elements);
  PayloadInfo info{};
  info.encoding = h.encoding;
  info.elements = h.elements;
  info.manifest_hash = h.manifest_hash;
  info.chunks = h.chunks;
  info.format_version = h.version;
  info.block_size = h.block_size;
  info.chunk_elements = h.chunk_elements;
  info.payload_bytes = payload.size();
  for (uint32_t i = 0; i < h.chunks; ++i)
    if (wire::read_chunk_entry(payload.data(), i).flags & wire::kChunkZstd)
      ++info.compressed_chunks;
  return info;
}

void decode(std::span<const std::byte> payload, std::span<float> out,
            uint64_t expected_manifest_hash) {
  decode_impl(payload, out, Mode::kWrite, 0.0f, expected_manifest_hash);
}

DecodedScan decode_scan(std::span<const std::byte> payload, uint64_t elements,
                        uint64_t expected_manifest_hash) {
  DecodedScan scan;
  decode_impl(payload, {}, Mode::kScan, 0.0f, expected_manifest_hash, elements, &scan);
  return scan;
}

void decode_accumulate(std::span<const std::byte> payload, std::span<float> out, float weight,
                       uint64_t expected_manifest_hash) {
  decode_impl(payload, out, Mode::kAccumulate, weight, expected_manifest_hash);
}

}  // namespace longhaul::transport
