// libFuzzer target for the codec decoder. Each input is tried twice: as is (exercising the
// header checks and checksums), and with its checksums recomputed (wire::reseal_for_testing),
// so that mutations reach the structural checks, the zstd bomb guard and the dequantizers
// instead of all stopping at a checksum. Any crash, sanitizer report, or broken contract
// (__builtin_trap below) is a bug. Inputs alternate between the AVX2 and the scalar kernels.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "transport/codec.h"
#include "transport/quantize.h"
#include "transport/wire_format.h"

namespace {
using namespace longhaul::transport;

constexpr uint64_t kMaxFuzzElements = 1u << 22;  // 16 MiB of floats per input, at most

void check(std::span<const std::byte> p) {
  PayloadInfo info;
  try {
    info = inspect(p, kMaxFuzzElements);
  } catch (const DecodeError&) {
    return;
  }
  std::vector<float> out(info.elements);
  bool decoded = true;
  try {
    decode(p, out, info.manifest_hash);
  } catch (const DecodeError&) {
    decoded = false;
  }
  // Contract: quantized payloads that decode give finite values (scales are capped).
  if (decoded && (info.encoding == Encoding::kInt8 || info.encoding == Encoding::kInt4))
    for (float v : out)
      if (!std::isfinite(v)) __builtin_trap();
  std::vector<float> acc(info.elements, 0.0f);
  try {
    decode_accumulate(p, acc, 1.0f, info.manifest_hash);
    if (!decoded) __builtin_trap();  // accumulate accepted what decode rejected
    for (size_t i = 0; i < out.size(); ++i)
      if (!(acc[i] == out[i] || (std::isnan(acc[i]) && std::isnan(out[i])))) __builtin_trap();
  } catch (const DecodeError&) {
    if (decoded) __builtin_trap();
  }
  // The scan (the coordinator's norm check) accepts exactly what decode accepts, and its sum
  // and first non-finite value are those of the decoded values.
  try {
    const DecodedScan scan = decode_scan(p, info.elements, info.manifest_hash);
    if (!decoded) __builtin_trap();
    int64_t bad = -1;
    for (size_t i = 0; i < out.size() && bad < 0; ++i)
      if (!std::isfinite(out[i])) bad = static_cast<int64_t>(i);
    if (scan.first_non_finite != bad) __builtin_trap();
    double want = 0;  // per chunk over the finite values, chunk sums added in order
    for (size_t lo = 0; lo < out.size(); lo += info.chunk_elements) {
      double ss = 0;
      for (size_t i = lo; i < std::min(out.size(), lo + info.chunk_elements); ++i)
        if (std::isfinite(out[i])) ss += static_cast<double>(out[i]) * out[i];
      want += ss;
    }
    if (!(scan.sum_squares == want)) __builtin_trap();
  } catch (const DecodeError&) {
    if (decoded) __builtin_trap();
  }
  // A wrong-sized output is refused, never overrun.
  std::vector<float> small(info.elements ? info.elements - 1 : 1);
  try {
    decode(p, small, info.manifest_hash);
    __builtin_trap();
  } catch (const DecodeError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Alternate the AVX2 and the portable scalar kernels, so both are fuzzed.
  static unsigned calls = 0;
  kernels::force_scalar_kernels(++calls % 2 == 0);
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  check(in);
  Bytes copy(in.begin(), in.end());
  if (wire::reseal_for_testing(copy.data(), copy.size())) check(copy);
  return 0;
}
