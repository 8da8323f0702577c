#include "outer/parallel_for.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

namespace longhaul::outer {

void parallel_ranges(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn) {
  const std::size_t ranges = (n + kParallelGrain - 1) / kParallelGrain;
  const std::size_t threads =
      std::min<std::size_t>(ranges, std::max(1u, std::thread::hardware_concurrency()));
  if (threads <= 1) {
    for (std::size_t r = 0; r < ranges; ++r) fn(r * kParallelGrain, std::min(n, (r + 1) * kParallelGrain));
    return;
  }
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t r; (r = next.fetch_add(1)) < ranges;)
      fn(r * kParallelGrain, std::min(n, (r + 1) * kParallelGrain));
  };
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

NormScan parallel_norm(std::span<const float> x) {
  const std::size_t ranges = (x.size() + kParallelGrain - 1) / kParallelGrain;
  std::vector<double> sums(ranges, 0.0);
  std::vector<int64_t> bad(ranges, -1);
  parallel_ranges(x.size(), [&](std::size_t lo, std::size_t hi) {
    double s = 0;
    for (std::size_t i = lo; i < hi; ++i) {
      const float v = x[i];
      if (!std::isfinite(v)) {
        bad[lo / kParallelGrain] = static_cast<int64_t>(i);
        return;
      }
      s += static_cast<double>(v) * v;
    }
    sums[lo / kParallelGrain] = s;
  });
  NormScan out;
  double total = 0;
  for (std::size_t r = 0; r < ranges; ++r) {
    if (bad[r] >= 0) {
      out.first_non_finite = bad[r];
      return out;
    }
    total += sums[r];
  }
  out.norm = std::sqrt(total);
  return out;
}

void parallel_fill(std::span<float> x, float v) {
  parallel_ranges(x.size(), [&](std::size_t lo, std::size_t hi) { std::fill(x.begin() + lo, x.begin() + hi, v); });
}

void parallel_axpy(std::span<float> acc, float a, std::span<const float> x) {
  parallel_ranges(acc.size(), [&](std::size_t lo, std::size_t hi) {
    // Not fused: this library is built for baseline x86-64 (no FMA), as the codec's scalar
    // kernel; AggregatorStreaming tests check the bits against decode_accumulate.
    for (std::size_t i = lo; i < hi; ++i) acc[i] += a * x[i];
  });
}

void parallel_div_inplace(std::span<float> x, double d) {
  parallel_ranges(x.size(), [&](std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) x[i] = static_cast<float>(static_cast<double>(x[i]) / d);
  });
}

void parallel_sub(std::span<const float> a, std::span<const float> b, std::span<float> out) {
  parallel_ranges(a.size(), [&](std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) out[i] = a[i] - b[i];
  });
}

void parallel_add_inplace(std::span<float> a, std::span<const float> b) {
  parallel_ranges(a.size(), [&](std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) a[i] += b[i];
  });
}

}  // namespace longhaul::outer
