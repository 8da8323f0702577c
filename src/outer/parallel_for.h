// Element-wise loops over θ-sized vectors, spread over the machine's cores (the coordinator's
// per-round tail is a few passes over 4N bytes; one core cannot saturate memory bandwidth).
// Work is split into fixed ranges of kParallelGrain elements, independent of the thread count,
// so every result (including the reduction order of parallel_norm) is the same on any machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

namespace longhaul::outer {

inline constexpr std::size_t kParallelGrain = std::size_t{1} << 18;  // elements per range

// Calls fn(lo, hi) for consecutive ranges covering [0, n), on up to hardware_concurrency
// threads (the caller's included). fn must not throw.
void parallel_ranges(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn);

struct NormScan {
  double norm = 0;                 // L2 norm (sum of squares in fp64, ranges summed in order)
  int64_t first_non_finite = -1;   // index of the first NaN/Inf, -1 when all finite
};
NormScan parallel_norm(std::span<const float> x);

void parallel_fill(std::span<float> x, float v);
// acc[i] += a·x[i]: the fp32 product rounded, then the fp32 add (never fused), as
// transport::decode_accumulate does it.
void parallel_axpy(std::span<float> acc, float a, std::span<const float> x);
void parallel_div_inplace(std::span<float> x, double d);  // x[i] = float(double(x[i]) / d)
// out = a - b (element-wise, fp32).
void parallel_sub(std::span<const float> a, std::span<const float> b, std::span<float> out);
void parallel_add_inplace(std::span<float> a, std::span<const float> b);  // a += b

}  // namespace longhaul::outer
