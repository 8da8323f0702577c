// encode() and encode_with_feedback(): quantize each chunk in place in the output buffer,
// optionally shuffle + zstd each chunk (in parallel over chunks), then compact and checksum.
#include <xxhash.h>
#include <zstd.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "transport/codec.h"
#include "transport/codec_sections.h"
#include "transport/quantize.h"
#include "transport/wire_format.h"

namespace longhaul::transport {

namespace {

struct ZstdCCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

// Shuffled + compressed bytes of each chunk, or an empty vector where zstd saves < 3%.
std::vector<Bytes> compress_chunks(const std::byte* raw_base,
                                                    const std::vector<uint64_t>& raw_off,
                                                    const wire::Header& h, const CodecOptions& o) {
  const uint32_t chunks = h.chunks;
  std::vector<Bytes> out(chunks);
  std::atomic<uint32_t> next{0};
  auto compress_some = [&] {
    std::unique_ptr<ZSTD_CCtx, ZstdCCtxFree> cctx(ZSTD_createCCtx());
    LH_CHECK(cctx != nullptr, "ZSTD_createCCtx failed");
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, o.zstd_level);
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1);
    Bytes shuffled, dst;
    for (uint32_t i = next++; i < chunks; i = next++) {
      const uint64_t n = wire::chunk_elements_at(h, i);
      const uint64_t raw = raw_off[i + 1] - raw_off[i];
      shuffled.resize(raw);
      sections::shuffle_chunk(h.encoding, n, h.block_size, raw_base + raw_off[i], shuffled.data());
      dst.resize(ZSTD_compressBound(raw));
      size_t c = ZSTD_compress2(cctx.get(), dst.data(), dst.size(), shuffled.data(), raw);
      LH_CHECK(!ZSTD_isError(c), "zstd: ", ZSTD_getErrorName(c));
      if (c * 100 <= raw * 97)
        out[i].assign(dst.begin(), dst.begin() + static_cast<std::ptrdiff_t>(c));
    }
  };
  std::exception_ptr error;
  std::mutex error_mu;
  auto work = [&] {
    try {
      compress_some();
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
      next = chunks;  // the others stop at their next chunk
    }
  };
  const uint32_t workers = std::min<uint32_t>(static_cast<uint32_t>(o.zstd_workers), chunks);
  if (workers <= 1) {
    work();
  } else {
    std::vector<std::thread> threads;
    for (uint32_t t = 0; t < workers; ++t) threads.emplace_back(work);
    for (auto& t : threads) t.join();
  }
  if (error) std::rethrow_exception(error);
  return out;
}

// Where the values come from: a whole vector, pulled chunk by chunk, or quantized elsewhere.
struct Source {
  std::span<const float> x;
  const ChunkSource* pull = nullptr;
  const QuantizedChunkSource* quantized = nullptr;
};

// Checks what a QuantizedChunkSource wrote: every scale within the codec's range, every level
// one the codec could have produced (int8 -127..127; int4 nibbles 1..15, the odd tail 0).
void check_prequantized(Encoding e, const std::byte* raw, uint64_t n, uint32_t block,
                        uint64_t begin) {
  const uint64_t nb = wire::block_count(n, block);
  for (uint64_t b = 0; b < nb; ++b) {
    if (wire::get_u16(raw + 2 * b) > kernels::kMaxScaleBits)  // also the sign bit
      throw EncodeError(detail::concat("pre-quantized block at element ", begin + b * block,
                                       ": scale bits ", wire::get_u16(raw + 2 * b),
                                       " out of the codec's range"));
  }
  const std::byte* q = raw + 2 * nb;
  if (e == Encoding::kInt8) {
    for (uint64_t k = 0; k < n; ++k)
      if (q[k] == std::byte{0x80})
        throw EncodeError(detail::concat("pre-quantized element ", begin + k, ": level -128"));
    return;
  }
  for (uint64_t k = 0; k < n; ++k) {
    const unsigned byte = static_cast<unsigned>(q[k / 2]);
    const unsigned nib = (k & 1) ? (byte >> 4) : (byte & 0xfu);
    if (nib == 0)
      throw EncodeError(detail::concat("pre-quantized element ", begin + k, ": int4 nibble 0"));
  }
  if ((n & 1) && (static_cast<unsigned>(q[n / 2]) >> 4) != 0)
    throw EncodeError(detail::concat("pre-quantized chunk at element ", begin,
                                     ": odd tail's high nibble not 0"));
}

void encode_impl(const Source& src, uint64_t n, float* residual, const Manifest& m,
                 const CodecOptions& o, Bytes& out) {
  validate(o);
  LH_CHECK_EQ(m.total_elements(), n);
  LH_CHECK(n <= wire::kMaxElements, "too many elements for one payload: ", n);
  LH_CHECK(!src.quantized || wire::is_quantized(o.encoding),
           "pre-quantized payloads are int8 or int4, not ", encoding_name(o.encoding));
  wire::Header h;
  h.encoding = o.encoding;
  h.block_size = wire::is_quantized(o.encoding) ? o.block_size : 0;
  h.chunk_elements = o.chunk_elements;
  h.elements = n;
  h.manifest_hash = m.hash();
  const uint64_t chunks = (n + o.chunk_elements - 1) / o.chunk_elements;
  LH_CHECK(chunks <= std::numeric_limits<uint32_t>::max(), "too many chunks: ", chunks);
  h.chunks = static_cast<uint32_t>(chunks);

  const uint64_t tend = wire::table_end(h.chunks);
  std::vector<uint64_t> raw_off(h.chunks + 1, 0);
  for (uint32_t i = 0; i < h.chunks; ++i)
    raw_off[i + 1] =
        raw_off[i] + wire::raw_chunk_bytes(h.encoding, wire::chunk_elements_at(h, i), h.block_size);
  if (out.size() < tend + raw_off[h.chunks])
    out.resize(tend + raw_off[h.chunks]);  // reuses capacity
  std::byte* raw_base = out.data() + tend;

  // x's values of chunk [begin, begin + ni): in place, or pulled into xs.
  std::vector<float> xs;
  if (src.pull) xs.resize(std::min<uint64_t>(n, o.chunk_elements));
  auto x_at = [&](uint64_t begin, uint64_t ni) -> const float* {
    if (!src.pull) return src.x.data() + begin;
    (*src.pull)(begin, std::span<float>(xs.data(), ni));
    return xs.data();
  };

  // 1. Quantize x (+ residual) chunk by chunk into the raw area.
  std::vector<float> y;
  std::vector<uint64_t> raw_sum(
      h.chunks);  // checksum of each raw chunk, taken while it is in cache
  if (residual) y.resize(std::min<uint64_t>(n, o.chunk_elements));
  for (uint32_t i = 0; i < h.chunks; ++i) {
    const uint64_t begin = uint64_t{i} * o.chunk_elements, ni = wire::chunk_elements_at(h, i);
    std::byte* raw = raw_base + raw_off[i];
    if (src.quantized) {
      (*src.quantized)(i, begin, ni, std::span<std::byte>(raw, raw_off[i + 1] - raw_off[i]));
      check_prequantized(h.encoding, raw, ni, h.block_size, begin);
    } else {
      const float* in = x_at(begin, ni);
      if (residual) {
        for (uint64_t k = 0; k < ni; ++k) y[k] = in[k] + residual[begin + k];
        in = y.data();
      }
      const int64_t bad = kernels::encode_chunk(h.encoding, in, ni, h.block_size, raw);
      if (bad != kernels::kOk) {
        const uint64_t at = begin + static_cast<uint64_t>(bad);
        throw EncodeError(detail::concat(
            "cannot encode element ", at, " = ", in[bad], residual ? " (x + residual)" : "",
            " as ", encoding_name(h.encoding), ": non-finite or out of the format's range"));
      }
    }
    raw_sum[i] = XXH3_64bits(raw, raw_off[i + 1] - raw_off[i]);
  }
  // 2. Error feedback, only once everything encoded (so an EncodeError leaves residual as it was):
  //    residual = (x + residual) - decode(raw).
  if (residual) {
    for (uint32_t i = 0; i < h.chunks; ++i) {
      const uint64_t begin = uint64_t{i} * o.chunk_elements, ni = wire::chunk_elements_at(h, i);
      kernels::decode_chunk(h.encoding, raw_base + raw_off[i], ni, h.block_size, y.data(), false,
                            0.0f);
      const float* xi = x_at(begin, ni);
      for (uint64_t k = 0; k < ni; ++k)
        residual[begin + k] = (xi[k] + residual[begin + k]) - y[k];
    }
  }
  // 3. Lossless stage, then compaction: chunk i moves to `cursor` (never past its raw offset).
  std::vector<Bytes> packed;
  if (o.zstd_level > 0 && h.chunks > 0) packed = compress_chunks(raw_base, raw_off, h, o);
  uint64_t cursor = tend;
  for (uint32_t i = 0; i < h.chunks; ++i) {
    wire::ChunkEntry c;
    const bool z = !packed.empty() && !packed[i].empty();
    const uint64_t len = z ? packed[i].size() : raw_off[i + 1] - raw_off[i];
    if (z) {
      std::memcpy(out.data() + cursor, packed[i].data(), len);
      c.flags = wire::kChunkZstd;
    } else if (cursor != tend + raw_off[i]) {
      std::memmove(out.data() + cursor, raw_base + raw_off[i], len);
    }
    LH_CHECK(len <= std::numeric_limits<uint32_t>::max(), "chunk too large: ", len);
    c.stored_bytes = static_cast<uint32_t>(len);
    c.checksum = z ? XXH3_64bits(out.data() + cursor, len) : raw_sum[i];
    wire::write_chunk_entry(out.data(), i, c);
    cursor += len;
  }
  out.resize(cursor);
  wire::write_header(out.data(), h);
  wire::seal_header(out.data(), h.chunks);
}

}  // namespace

Bytes encode(std::span<const float> x, const Manifest& m, const CodecOptions& o) {
  Bytes out;
  encode_impl(Source{.x = x}, x.size(), nullptr, m, o, out);
  return out;
}

void encode_into(std::span<const float> x, const Manifest& m, const CodecOptions& o,
                 Bytes& out) {
  encode_impl(Source{.x = x}, x.size(), nullptr, m, o, out);
}

Bytes encode_with_feedback(std::span<const float> x, std::span<float> residual,
                                            const Manifest& m, const CodecOptions& o) {
  LH_CHECK_EQ(residual.size(), x.size());
  Bytes out;
  encode_impl(Source{.x = x}, x.size(), residual.data(), m, o, out);
  return out;
}

Bytes encode_with_feedback_pulled(const ChunkSource& x, std::span<float> residual,
                                  const Manifest& m, const CodecOptions& o) {
  Bytes out;
  encode_impl(Source{.x = {}, .pull = &x}, residual.size(), residual.data(), m, o, out);
  return out;
}

Bytes encode_prequantized(const QuantizedChunkSource& src, const Manifest& m,
                          const CodecOptions& o) {
  Bytes out;
  encode_impl(Source{.x = {}, .pull = nullptr, .quantized = &src}, m.total_elements(), nullptr, m, o, out);
  return out;
}

}  // namespace longhaul::transport
