// WAN emulation, receive side: when a message that arrived over the real (fast) socket is
// handed to the receiver, as if it had come down an emulated link of `bytes_per_s` with a
// one-way `latency`. The link carries one message at a time, in arrival order:
//     tx_done(m)    = max(arrival(m), tx_done(previous)) + bytes(m) / bytes_per_s
//     deliver_at(m) = tx_done(m) + latency
// so a message is delivered no earlier than max(its arrival, the previous message's
// transmission end) + its own transmission time + the latency; B bytes in a burst take at least
// B / bytes_per_s, and back-to-back messages share one latency (it is pipelined, as on a real
// link, not added per message). Delivery times never decrease. The emulated link sits after
// the real one: its time is added to whatever the real transfer took (tiny on loopback).
// bytes_per_s = 0: no transmission time; latency 0: none. Not thread-safe (one per client,
// under its lock).
#pragma once

#include <chrono>
#include <cstdint>

namespace longhaul::transport {

class ReceivePacer {
 public:
  using Clock = std::chrono::steady_clock;
  ReceivePacer(uint64_t bytes_per_s, std::chrono::milliseconds latency)
      : rate_(bytes_per_s), latency_(latency) {}
  // Emulation on at all (a rate or a latency).
  bool enabled() const { return rate_ > 0 || latency_.count() > 0; }
  // Books a message of `bytes` wire bytes that arrived at `arrival`; returns when to deliver it.
  Clock::time_point deliver_at(Clock::time_point arrival, uint64_t bytes);

 private:
  uint64_t rate_;
  std::chrono::milliseconds latency_;
  Clock::time_point tx_done_{};
};

}  // namespace longhaul::transport
