#include "transport/rate_limiter.h"

#include <algorithm>

namespace longhaul::transport {

std::size_t RateLimiter::chunk_size(std::size_t max_chunk) const {
  if (rate_ == 0) return max_chunk;
  return std::clamp<std::size_t>(rate_ / 50, 4096, max_chunk);
}

RateLimiter::Clock::time_point RateLimiter::reserve(std::size_t n) {
  const auto now = Clock::now();
  // Late by less than kCatchUp (timer lag, the previous write's own time): keep the schedule,
  // so small lags do not accumulate. Idle for longer: restart from now (no stored-up burst).
  if (now > next_ + kCatchUp) next_ = now;
  next_ = next_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(double(n) / double(rate_)));
  return next_;
}

}  // namespace longhaul::transport
