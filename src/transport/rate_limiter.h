// WAN emulation: paces a byte stream to a fixed rate (bytes/s). A chunk of n bytes is released
// at the end of its n/rate time slot; slots follow each other back to back (restarting from
// now after a pause), no initial burst, so a transfer of B bytes takes B / rate seconds. Not thread-safe (one per connection, on its strand).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace longhaul::transport {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateLimiter(uint64_t bytes_per_s) : rate_(bytes_per_s) {}
  bool enabled() const { return rate_ > 0; }
  // Chunk size that keeps pacing smooth: ~20 ms of traffic, within [4 KiB, max_chunk].
  std::size_t chunk_size(std::size_t max_chunk) const;
  // When a chunk of n bytes may be sent; books its slot.
  Clock::time_point reserve(std::size_t n);

 private:
  static constexpr std::chrono::milliseconds kCatchUp{100};  // max lag made up by sending sooner
  uint64_t rate_;
  Clock::time_point next_{};
};

}  // namespace longhaul::transport
