// Error feedback: over 100 rounds the sum of what the decoder saw tracks the sum of what was
// meant to be sent, to within one round's quantization error; without feedback it drifts.
#include <gtest/gtest.h>

#include <cmath>

#include "codec_util.h"
#include "transport/codec.h"

namespace longhaul::transport {
namespace {
using namespace testing;

double rel_norm_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  return std::sqrt(num / den);
}

TEST(CodecFeedback, AccumulatedErrorGoesToZeroOver100Rounds) {
  const uint64_t n = 4096;
  const int rounds = 100;
  Manifest m = flat_manifest(n);
  for (Encoding e : {Encoding::kInt4, Encoding::kInt8, Encoding::kBf16}) {
    SCOPED_TRACE(std::string(encoding_name(e)));
    CodecOptions o{.encoding = e, .block_size = 64, .chunk_elements = 1024};
    // The same pseudo-gradient every round (the worst case for bias) plus fresh noise.
    const auto base = gaussian(n, 1);
    std::vector<double> sent(n, 0.0), seen_fb(n, 0.0), seen_plain(n, 0.0);
    std::vector<float> residual(n, 0.0f), dec(n);
    double rel_fb_first = 0;
    for (int r = 0; r < rounds; ++r) {
      auto noise = gaussian(n, 100 + r, 2e-4f);
      std::vector<float> x(n);
      for (uint64_t i = 0; i < n; ++i) x[i] = base[i] + noise[i], sent[i] += x[i];
      decode(encode_with_feedback(x, residual, m, o), dec, m.hash());
      for (uint64_t i = 0; i < n; ++i) seen_fb[i] += dec[i];
      decode(encode(x, m, o), dec, m.hash());
      for (uint64_t i = 0; i < n; ++i) seen_plain[i] += dec[i];
      // Invariant: what was sent = what was seen + what is still owed (the residual).
      if (r == 0) rel_fb_first = rel_norm_diff(seen_fb, sent);
    }
    std::vector<double> owed(n);
    for (uint64_t i = 0; i < n; ++i) owed[i] = seen_fb[i] + residual[i];
    EXPECT_LT(rel_norm_diff(owed, sent), 1e-5);
    const double rel_fb = rel_norm_diff(seen_fb, sent), rel_plain = rel_norm_diff(seen_plain, sent);
    // With feedback the error stays ~one round's, so relative to 100 rounds' sum it shrinks
    // ~100x; without it the bias of rounding the same value the same way never averages out.
    EXPECT_LT(rel_fb, rel_fb_first / 30) << "first " << rel_fb_first << " after 100 " << rel_fb;
    EXPECT_LT(rel_fb, rel_plain / 10) << "feedback " << rel_fb << " plain " << rel_plain;
  }
}

}  // namespace
}  // namespace longhaul::transport
