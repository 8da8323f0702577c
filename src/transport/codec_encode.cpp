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

void encode_impl(std::span<const float> x, float* residual, const Manifest& m,
                 const CodecOptions& o, Bytes& out) {
  validate(o);
  LH_CHECK_EQ(m.total_elements(), static_cast<uint64_t>(x.size()));
  const uint64_t n = x.size();
  LH_CHECK(n <= wire::kMaxElements, "too many elements for one payload: ", n);
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

  // 1. Quantize x (+ residual) chunk by chunk into the raw area.
  std::vector<float> y;
  std::vector<uint64_t> raw_sum(
      h.chunks);  // checksum of each raw chunk, taken while it is in cache
  if (residual) y.resize(std::min<uint64_t>(n, o.chunk_elements));
  for (uint32_t i = 0; i < h.chunks; ++i) {
    const uint64_t begin = uint64_t{i} * o.chunk_elements, ni = wire::chunk_elements_at(h, i);
    const float* src = x.data() + begin;
    if (residual) {
      for (uint64_t k = 0; k < ni; ++k) y[k] = src[k] + residual[begin + k];
      src = y.data();
    }
    const int64_t bad =
        kernels::encode_chunk(h.encoding, src, ni, h.block_size, raw_base + raw_off[i]);
    if (bad != kernels::kOk) {
      const uint64_t at = begin + static_cast<uint64_t>(bad);
      throw EncodeError(detail::concat(
          "cannot encode element ", at, " = ", src[bad], residual ? " (x + residual)" : "", " as ",
          encoding_name(h.encoding), ": non-finite or out of the format's range"));
    }
    raw_sum[i] = XXH3_64bits(raw_base + raw_off[i], raw_off[i + 1] - raw_off[i]);
  }
  // 2. Error feedback, only once everything encoded (so an EncodeError leaves residual as it was):
  //    residual = (x + residual) - decode(raw).
  if (residual) {
    for (uint32_t i = 0; i < h.chunks; ++i) {
      const uint64_t begin = uint64_t{i} * o.chunk_elements, ni = wire::chunk_elements_at(h, i);
      kernels::decode_chunk(h.encoding, raw_base + raw_off[i], ni, h.block_size, y.data(), false,
                            0.0f);
      for (uint64_t k = 0; k < ni; ++k)
        residual[begin + k] = (x[begin + k] + residual[begin + k]) - y[k];
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
  encode_impl(x, nullptr, m, o, out);
  return out;
}

void encode_into(std::span<const float> x, const Manifest& m, const CodecOptions& o,
                 Bytes& out) {
  encode_impl(x, nullptr, m, o, out);
}

Bytes encode_with_feedback(std::span<const float> x, std::span<float> residual,
                                            const Manifest& m, const CodecOptions& o) {
  LH_CHECK_EQ(residual.size(), x.size());
  Bytes out;
  encode_impl(x, residual.data(), m, o, out);
  return out;
}

}  // namespace longhaul::transport
