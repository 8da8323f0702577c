// inner::encode_with_feedback_on_device(): torch ops on the tensors' device give bitwise the
// payload and residual of transport::encode_with_feedback() (issue 13 §2). CPU here; the Cuda
// variant runs where a GPU is (scripts/gpu-check), and skips elsewhere.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "inner/device_quantizer.h"
#include "inner/flat_range.h"
#include "transport/codec.h"
#include "transport/codec_util.h"

#include <xxhash.h>

namespace longhaul::inner {
namespace {

using transport::CodecOptions;
using transport::Encoding;
using transport::testing::flat_manifest;

// Zeros, exact ties (halves after scaling), tiny and huge values, a zero block, subnormals.
std::vector<float> nasty(uint64_t n, uint32_t seed, float sd = 1e-2f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> x(n);
  for (uint64_t i = 0; i < n; ++i) {
    float v = d(rng);
    switch (i % 13) {
      case 0: v = 0.0f; break;
      case 2: v = 0.5f * std::round(v * 1000) / 1000; break;
      case 4: v *= 1e-30f; break;
      case 6: v *= 1e18f; break;
      case 8: v = std::bit_cast<float>(static_cast<uint32_t>(1 + (i & 0xff))); break;  // subnormal
      case 10: v = -0.0f; break;
      default: break;
    }
    x[i] = v;
  }
  for (uint64_t i = 300; i < std::min<uint64_t>(n, 600); ++i) x[i] = 0.0f;
  return x;
}

// Ties at exactly level + 0.5 after scaling: a block whose absmax is levels * 2^k, the others
// (l + 0.5) * 2^k.
std::vector<float> ties(uint64_t n, float levels) {
  std::vector<float> x(n);
  for (uint64_t i = 0; i < n; ++i) x[i] = (i % 8 == 0) ? levels * 0.25f : (float(i % 7) + 0.5f) * 0.25f * ((i & 1) ? -1 : 1);
  return x;
}

void check_parity(const torch::Device& dev) {
  for (Encoding e : {Encoding::kInt8, Encoding::kInt4}) {
    const float levels = e == Encoding::kInt8 ? 127.0f : 7.0f;
    for (uint32_t block : {8u, 64u, 128u}) {
      for (int zstd : {0, 3}) {
        for (uint64_t n : {uint64_t{1}, uint64_t{7}, uint64_t{1001}, uint64_t{9000}}) {
          for (int kind = 0; kind < 2; ++kind) {
            SCOPED_TRACE(std::string(transport::encoding_name(e)) + " block " + std::to_string(block) +
                         " zstd " + std::to_string(zstd) + " n " + std::to_string(n) + " kind " +
                         std::to_string(kind));
            CodecOptions o{.encoding = e, .block_size = block, .zstd_level = zstd, .chunk_elements = block * 16};
            const transport::Manifest m = flat_manifest(n);
            const std::vector<float> x = kind == 0 ? nasty(n, 5 + n + block) : ties(n, levels);
            std::vector<float> r_host = kind == 0 ? nasty(n, 77, 1e-4f) : std::vector<float>(n, 0.0f);
            const auto opts = torch::TensorOptions().dtype(torch::kFloat32);
            torch::Tensor x_dev = torch::from_blob(const_cast<float*>(x.data()), {int64_t(n)}, opts).to(dev);
            torch::Tensor r_dev = torch::from_blob(r_host.data(), {int64_t(n)}, opts).to(dev).clone();
            // Two rounds: the second starts from the residual the first left.
            for (int round = 0; round < 2; ++round) {
              const transport::Bytes want = transport::encode_with_feedback(x, r_host, m, o);
              const transport::Bytes got = encode_with_feedback_on_device(
                  [&](uint64_t b, uint64_t cn) { return x_dev.narrow(0, int64_t(b), int64_t(cn)); }, r_dev, m, o);
              ASSERT_TRUE(want == got) << "payload differs in round " << round;
              const torch::Tensor r_back = r_dev.to(torch::kCPU);
              ASSERT_EQ(0, std::memcmp(r_back.data_ptr<float>(), r_host.data(), n * sizeof(float)))
                  << "residual differs in round " << round;
            }
          }
        }
      }
    }
  }
}

void check_errors(const torch::Device& dev) {
  const uint64_t n = 5000;
  const transport::Manifest m = flat_manifest(n);
  CodecOptions o{.encoding = Encoding::kInt8, .block_size = 64, .chunk_elements = 1024};
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 3e38f}) {
    std::vector<float> x = nasty(n, 3);
    x[4321] = bad;
    const auto opts = torch::TensorOptions().dtype(torch::kFloat32);
    torch::Tensor x_dev = torch::from_blob(x.data(), {int64_t(n)}, opts).to(dev);
    torch::Tensor r_dev = torch::full({int64_t(n)}, 1e-5f, opts.device(dev));
    std::vector<float> r_host(n, 1e-5f);
    EXPECT_THROW(transport::encode_with_feedback(x, r_host, m, o), transport::EncodeError);
    try {
      encode_with_feedback_on_device([&](uint64_t b, uint64_t cn) { return x_dev.narrow(0, int64_t(b), int64_t(cn)); },
                                     r_dev, m, o);
      ADD_FAILURE() << "no EncodeError for " << bad;
    } catch (const transport::EncodeError& e) {
      EXPECT_NE(std::string(e.what()).find("element 4321"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(torch::equal(r_dev.cpu(), torch::full({int64_t(n)}, 1e-5f))) << "residual touched";
  }
}

TEST(DeviceQuantizer, CpuBitwiseEqualToCodec) { check_parity(torch::kCPU); }
TEST(DeviceQuantizer, CpuErrorsLeaveResidual) { check_errors(torch::kCPU); }

TEST(DeviceQuantizer, CudaBitwiseEqualToCodec) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU";
  check_parity(torch::Device(torch::kCUDA, 0));
  check_errors(torch::Device(torch::kCUDA, 0));
}

// FlatParamRange reads (and writes) the same values as params_to_flat, across parameter boundaries.
TEST(FlatParamRange, ReadsWritesAndSlicesAcrossParameters) {
  torch::nn::Sequential net(torch::nn::Linear(5, 3), torch::nn::Linear(3, 7));
  std::vector<float> all;
  for (const auto& p : net->parameters()) {
    auto c = p.detach().reshape({-1}).contiguous();
    all.insert(all.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  const FlatParamRange r(*net);
  ASSERT_EQ(r.size(), all.size());
  for (uint64_t b = 0; b < all.size(); b += 3) {
    const uint64_t n = std::min<uint64_t>(11, all.size() - b);
    std::vector<float> out(n);
    r.read(b, out);
    EXPECT_EQ(0, std::memcmp(out.data(), all.data() + b, n * sizeof(float)));
    const torch::Tensor s = r.slice(b, n);
    EXPECT_EQ(0, std::memcmp(s.data_ptr<float>(), all.data() + b, n * sizeof(float)));
  }
  EXPECT_EQ(params_xxh64(*net), XXH64(all.data(), all.size() * sizeof(float), 0));
  // write() reaches the parameters themselves, across their boundaries.
  std::vector<float> v(9);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 100.0f + float(i);
  r.write(14, v);  // the first Linear has 5*3 + 3 = 18 values: this spans into the second
  for (size_t i = 0; i < v.size(); ++i) all[14 + i] = v[i];
  std::vector<float> now;
  for (const auto& p : net->parameters()) {
    auto c = p.detach().reshape({-1}).contiguous();
    now.insert(now.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  EXPECT_EQ(now, all);
}

}  // namespace
}  // namespace longhaul::inner
