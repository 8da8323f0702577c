// ReceivePacer (transport/receive_pacer.h) on synthetic times: transmission serialises at the
// rate, latency is added once per message and pipelined, delivery times never decrease.
#include "transport/receive_pacer.h"

#include <gtest/gtest.h>

namespace longhaul::transport {
namespace {
using namespace std::chrono_literals;
using Clock = ReceivePacer::Clock;

TEST(ReceivePacer, OffIsImmediate) {
  ReceivePacer p(0, 0ms);
  EXPECT_FALSE(p.enabled());
  const auto t = Clock::now();
  EXPECT_EQ(p.deliver_at(t, 1 << 20), t);
}

TEST(ReceivePacer, RateSerialisesAndLatencyIsPipelined) {
  ReceivePacer p(1000, 50ms);  // 1000 B/s: 1 ms per byte
  EXPECT_TRUE(p.enabled());
  const auto t0 = Clock::now();
  EXPECT_EQ(p.deliver_at(t0, 100), t0 + 100ms + 50ms);
  // Arrives while the first is still being "transmitted": waits for it, then its own 200 ms; one
  // latency, not two.
  EXPECT_EQ(p.deliver_at(t0 + 10ms, 200), t0 + 300ms + 50ms);
  // Arrives after the link went idle: starts at its arrival.
  EXPECT_EQ(p.deliver_at(t0 + 1s, 0), t0 + 1s + 50ms);
  // Out-of-order arrival stamps cannot make delivery earlier than the previous one.
  EXPECT_GE(p.deliver_at(t0, 1), t0 + 1s + 50ms);
}

TEST(ReceivePacer, LatencyOnly) {
  ReceivePacer p(0, 20ms);
  EXPECT_TRUE(p.enabled());
  const auto t0 = Clock::now();
  EXPECT_EQ(p.deliver_at(t0, 1 << 30), t0 + 20ms);
  EXPECT_EQ(p.deliver_at(t0 + 1ms, 1 << 30), t0 + 21ms);
}

TEST(ReceivePacer, NeverShorterThanBytesOverRate) {
  ReceivePacer p(3, 0ms);  // 1/3 s per byte does not divide nanoseconds evenly: rounded up
  const auto t0 = Clock::now();
  const auto d = p.deliver_at(t0, 1) - t0;
  EXPECT_GE(std::chrono::duration<double>(d).count(), 1.0 / 3.0);
}

}  // namespace
}  // namespace longhaul::transport
