#include "inner/device_quantizer.h"

#include <limits>
#include <sstream>

#include "common/error.h"
#include "transport/quantize.h"
#include "transport/wire_format.h"

namespace longhaul::inner {

namespace {

namespace kernels = transport::kernels;

struct Blocks {
  torch::Tensor scale_bits;  // [nb] int32: the bf16 bits of each block's scale (unchecked)
  torch::Tensor scale;       // [nb] fp32
  torch::Tensor absmax;      // [nb] fp32
};

// y [n] -> y padded with zeros to whole blocks, viewed [nb, block].
torch::Tensor as_blocks(const torch::Tensor& y, uint32_t block) {
  const int64_t n = y.numel(), nb = (n + block - 1) / block, pad = nb * block - n;
  const torch::Tensor p = pad ? torch::cat({y, torch::zeros({pad}, y.options())}) : y;
  return p.view({nb, static_cast<int64_t>(block)});
}

// The codec's block_scale(): absmax / levels rounded UP to bf16, at least FLT_MIN's bits.
Blocks block_scales(const torch::Tensor& yb, float levels) {
  Blocks b;
  b.absmax = yb.abs().amax(1);
  const torch::Tensor q = b.absmax / torch::full_like(b.absmax, levels);  // a true division
  torch::Tensor bits = q.view(torch::kInt32);
  bits = torch::where(bits.bitwise_and(0xffff).ne(0), bits + 0x10000, bits);
  b.scale_bits = bits.bitwise_right_shift(16).clamp_min(kernels::kMinScaleBits);
  b.scale = b.scale_bits.clamp_max(0x7f7f).bitwise_left_shift(16).view(torch::kFloat32);
  return b;
}

// Per block: true where the codec refuses (non-finite absmax, or a scale beyond its range).
torch::Tensor bad_blocks(const Blocks& b) {
  return b.absmax.isfinite().logical_not().logical_or(b.scale_bits.gt(kernels::kMaxScaleBits));
}

[[noreturn]] void throw_bad(const torch::Tensor& y, uint64_t begin, transport::Encoding e, float levels,
                            uint32_t block) {
  const torch::Tensor yb = as_blocks(y, block);
  const Blocks b = block_scales(yb, levels);
  const int64_t blk = bad_blocks(b).to(torch::kInt32).argmax().item<int64_t>();
  const torch::Tensor row = yb[blk].to(torch::kCPU);
  // The codec names the first non-finite element, else the first at the block's absmax.
  const float mx = b.absmax[blk].item<float>();
  int64_t at = 0;
  const float* r = row.data_ptr<float>();
  bool found = false;
  for (int64_t i = 0; i < row.numel() && !found; ++i)
    if (!std::isfinite(r[i])) at = i, found = true;
  for (int64_t i = 0; i < row.numel() && !found; ++i)
    if (std::fabs(r[i]) >= mx) at = i, found = true;
  std::ostringstream os;
  os << "cannot encode element " << begin + static_cast<uint64_t>(blk * block + at) << " = " << r[at]
     << " (x + residual) as " << transport::encoding_name(e) << ": non-finite or out of the format's range";
  throw transport::EncodeError(os.str());
}

}  // namespace

transport::Bytes encode_with_feedback_on_device(const DeviceChunkSource& x, torch::Tensor& residual,
                                                const transport::Manifest& m,
                                                const transport::CodecOptions& o) {
  transport::validate(o);
  LH_CHECK(transport::wire::is_quantized(o.encoding), "device quantization is int8 or int4, not ",
           transport::encoding_name(o.encoding));
  const uint64_t n = m.total_elements();
  LH_CHECK(residual.dim() == 1 && static_cast<uint64_t>(residual.numel()) == n &&
               residual.scalar_type() == torch::kFloat32 && residual.is_contiguous(),
           "residual must be a contiguous 1-D fp32 tensor of ", n, " elements");
  const bool int8 = o.encoding == transport::Encoding::kInt8;
  const float levels = int8 ? 127.0f : 7.0f;
  const uint32_t block = o.block_size;
  const uint64_t step = o.chunk_elements;
  torch::NoGradGuard no_grad;
  auto y_at = [&](uint64_t begin, uint64_t cn) {
    torch::Tensor xi = x(begin, cn);
    LH_CHECK(xi.numel() == static_cast<int64_t>(cn) && xi.device() == residual.device() &&
                 xi.scalar_type() == torch::kFloat32,
             "device chunk source returned the wrong shape, device or dtype at ", begin);
    return xi.reshape({-1}) + residual.narrow(0, static_cast<int64_t>(begin), static_cast<int64_t>(cn));
  };

  // 1. Validate everything first (one host sync), so an error leaves the residual unchanged.
  torch::Tensor any_bad = torch::zeros({}, residual.options().dtype(torch::kBool));
  for (uint64_t begin = 0; begin < n; begin += step) {
    const uint64_t cn = std::min(step, n - begin);
    any_bad = any_bad.logical_or(bad_blocks(block_scales(as_blocks(y_at(begin, cn), block), levels)).any());
  }
  if (any_bad.item<bool>()) {
    for (uint64_t begin = 0; begin < n; begin += step) {
      const uint64_t cn = std::min(step, n - begin);
      const torch::Tensor y = y_at(begin, cn);
      if (bad_blocks(block_scales(as_blocks(y, block), levels)).any().item<bool>())
        throw_bad(y, begin, o.encoding, levels, block);
    }
  }

  // 2. Quantize chunk by chunk into the payload's raw area (the codec pulls the chunks in
  //    order), updating each chunk's residual as it goes.
  return transport::encode_prequantized(
      [&](uint32_t, uint64_t begin, uint64_t cn, std::span<std::byte> raw) {
        const torch::Tensor y = y_at(begin, cn);
        const torch::Tensor yb = as_blocks(y, block);
        const Blocks b = block_scales(yb, levels);
        const torch::Tensor inv = torch::ones_like(b.scale) / b.scale;            // [nb]
        // Levels as integers (a level of -0.0 must decode to +0, as the codec's int levels do).
        const torch::Tensor lv = (yb * inv.unsqueeze(1)).round_().clamp_(-levels, levels).to(torch::kInt8);
        const torch::Tensor dec =
            (lv.to(torch::kFloat32) * b.scale.unsqueeze(1)).view({-1}).narrow(0, 0, static_cast<int64_t>(cn));
        residual.narrow(0, static_cast<int64_t>(begin), static_cast<int64_t>(cn)).copy_(y - dec);
        const torch::Tensor flat = lv.view({-1}).narrow(0, 0, static_cast<int64_t>(cn));
        torch::Tensor q;
        if (int8) {
          q = flat.view(torch::kUInt8);
        } else {
          torch::Tensor u = (flat + 8).to(torch::kUInt8);
          if (cn & 1) u = torch::cat({u, torch::zeros({1}, u.options())});
          const torch::Tensor pairs = u.view({-1, 2});
          q = pairs.select(1, 0).bitwise_or(pairs.select(1, 1).bitwise_left_shift(4));
        }
        const torch::Tensor bytes = torch::cat({b.scale_bits.to(torch::kInt16).view(torch::kUInt8), q});
        LH_CHECK(static_cast<uint64_t>(bytes.numel()) == raw.size(), "raw chunk size ", bytes.numel(), " vs ",
                 raw.size());
        torch::from_blob(raw.data(), {static_cast<int64_t>(raw.size())}, torch::kUInt8).copy_(bytes);
      },
      m, o);
}

}  // namespace longhaul::inner
