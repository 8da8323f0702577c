// `longhaul bench codec`: single-core encode/decode throughput, wire bytes per parameter and
// error of each encoding, against memcpy of the same buffer measured in the same run.
// One JSON line per encoding on stdout. GB/s are of the fp32 input (4 bytes per parameter);
// bytes_per_param counts the whole payload (header, chunk table, scales, checksums).
// With --zstd L the lossless stage's size and cost are reported in separate zstd_* fields.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "app/commands.h"
#include "common/error.h"
#include "transport/codec.h"
#include "transport/quantize.h"

namespace longhaul::app {

namespace {
using namespace longhaul::transport;

struct BenchArgs {
  uint64_t params = 1u << 24;
  std::string encoding = "all";
  int zstd = 0;
  int zstd_workers = 0;
  uint32_t block = 128;
  int repeat = 5;
  std::string input;
  bool scalar = false;
};

// Best (shortest) wall time of `repeat` runs of fn, in seconds.
template <typename Fn>
double best_seconds(int repeat, Fn&& fn) {
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

std::vector<float> load_input(const BenchArgs& a) {
  if (a.input.empty()) {
    std::mt19937 rng(1234);
    std::normal_distribution<float> d(0.0f, 1e-3f);
    std::vector<float> x(a.params);
    for (auto& v : x) v = d(rng);
    return x;
  }
  std::ifstream in(a.input, std::ios::binary | std::ios::ate);
  if (!in) throw UserError("--input " + a.input + ": cannot open");
  const auto bytes = static_cast<uint64_t>(in.tellg());
  if (bytes == 0 || bytes % 4 != 0)
    throw UserError(detail::concat("--input ", a.input, ": ", bytes,
                                   " bytes, expected a non-empty multiple of 4 (raw fp32)"));
  std::vector<float> x(bytes / 4);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(x.data()), static_cast<std::streamsize>(bytes));
  for (size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i]))
      throw UserError(detail::concat("--input ", a.input, ": element ", i, " is not finite"));
  return x;
}

double rms_rel_error(const std::vector<float>& x, const std::vector<float>& y) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = double(x[i]) - y[i];
    num += d * d;
    den += double(x[i]) * x[i];
  }
  return den > 0 ? std::sqrt(num / den) : 0.0;
}

int run_bench(const BenchArgs& a) {
  std::vector<Encoding> encodings;
  if (a.encoding == "all")
    encodings = {Encoding::kFp32, Encoding::kBf16, Encoding::kFp16, Encoding::kInt8,
                 Encoding::kInt4};
  else
    encodings = {parse_encoding(a.encoding)};
  if (a.repeat < 1) throw UserError("--repeat must be >= 1");
  kernels::force_scalar_kernels(a.scalar);
  const std::vector<float> x = load_input(a);
  const uint64_t n = x.size();
  Manifest m;
  m.add("bench", {static_cast<int64_t>(n)});
  const double gb = 4.0 * double(n) / 1e9;
  std::vector<float> y(n), copy(n);
  std::memcpy(copy.data(), x.data(), 4 * n);  // touch the destination once
  for (Encoding e : encodings) {
    CodecOptions o{.encoding = e, .block_size = a.block};
    validate(o);
    const double t_memcpy =
        best_seconds(a.repeat, [&] { std::memcpy(copy.data(), x.data(), 4 * n); });
    Bytes payload;
    // Output buffers are preallocated for all three (memcpy, encode_into, decode): we measure
    // the codec, not the kernel's page-fault path for fresh allocations.
    const double t_enc = best_seconds(a.repeat, [&] { encode_into(x, m, o, payload); });
    const double t_dec = best_seconds(a.repeat, [&] { decode(payload, y, m.hash()); });
    std::vector<float> acc(n, 0.0f);
    const double t_acc =
        best_seconds(a.repeat, [&] { decode_accumulate(payload, acc, 0.5f, m.hash()); });
    std::string line =
        detail::concat("{\"encoding\":\"", encoding_name(e), "\",\"params\":", n,
                       ",\"block_size\":", a.block, ",\"kernels\":\"", kernels::kernel_name(),
                       "\",\"bytes_per_param\":", double(payload.size()) / double(n),
                       ",\"encode_gbps\":", gb / t_enc, ",\"decode_gbps\":", gb / t_dec,
                       ",\"accumulate_gbps\":", gb / t_acc, ",\"memcpy_gbps\":", gb / t_memcpy,
                       ",\"rms_rel_error\":", rms_rel_error(x, y));
    if (a.zstd > 0) {
      CodecOptions z = o;
      z.zstd_level = a.zstd;
      z.zstd_workers = a.zstd_workers;
      Bytes zp;
      const double tz_enc = best_seconds(a.repeat, [&] { encode_into(x, m, z, zp); });
      const double tz_dec = best_seconds(a.repeat, [&] { decode(zp, y, m.hash()); });
      const PayloadInfo info = inspect(zp, n);
      line += detail::concat(
          ",\"zstd_level\":", a.zstd, ",\"zstd_workers\":", a.zstd_workers,
          ",\"zstd_bytes_per_param\":", double(zp.size()) / double(n),
          ",\"zstd_chunks_compressed\":", info.compressed_chunks, ",\"zstd_chunks\":", info.chunks,
          ",\"zstd_encode_gbps\":", gb / tz_enc, ",\"zstd_decode_gbps\":", gb / tz_dec);
    }
    std::printf("%s}\n", line.c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

void register_bench_codec(CLI::App& app, CommandFn& run) {
  auto args = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand(
      "codec", "codec throughput, bytes/param and error per encoding (JSON lines)");
  cmd->add_option("--params", args->params,
                  "parameters in the Gaussian test vector (ignored with --input)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
  cmd->add_option("--encoding", args->encoding, "fp32|bf16|fp16|int8|int4|all");
  cmd->add_option("--zstd", args->zstd,
                  "also measure the lossless stage at this zstd level (0 = off)")
      ->check(CLI::Range(0, 22));
  cmd->add_option("--zstd-workers", args->zstd_workers, "threads for the zstd stage (0 = caller's)")
      ->check(CLI::Range(0, 256));
  cmd->add_option("--block", args->block, "elements per scale for int8/int4");
  cmd->add_option("--repeat", args->repeat, "runs per measurement; the best is reported");
  cmd->add_option("--input", args->input,
                  "raw little-endian fp32 file (a real pseudo-gradient) instead of Gaussian");
  cmd->add_flag("--scalar", args->scalar, "force the portable scalar kernels (no AVX2 dispatch)");
  cmd->callback([args, &run] { run = [args] { return run_bench(*args); }; });
}

}  // namespace longhaul::app
