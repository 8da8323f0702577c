// WAN emulation: the per-connection rate limit holds within 10% over a multi-second transfer,
// and added one-way latency delays each message.
#include <gtest/gtest.h>

#include <future>

#include "transport/channel_test_util.h"

namespace longhaul::transport {
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(ChannelWan, RateLimitHoldsWithinTenPercent) {
  ChannelServer server(test::server_options());
  std::promise<Clock::time_point> got;
  server.on_message([&](std::shared_ptr<Connection>, Message m) { got.set_value(Clock::now()); });
  server.start();
  auto o = test::client_options(server.port(), test::test_pki().site_a);
  const uint64_t rate = 4 << 20;  // 4 MiB/s
  o.rate_limit_bytes_per_s = rate;
  ChannelClient client(o);
  client.connect();
  const uint64_t bytes = 10 << 20;  // ~2.5 s at the limit
  auto fut = got.get_future();
  const auto t0 = Clock::now();
  client.send(Message{"upload", {}, Bytes(bytes)});
  ASSERT_EQ(fut.wait_for(30s), std::future_status::ready);
  const double seconds = std::chrono::duration<double>(fut.get() - t0).count();
  const double measured = bytes / seconds;
  EXPECT_NEAR(measured / rate, 1.0, 0.10) << "measured " << measured << " B/s over " << seconds << " s";
  client.close();
  server.stop();
}

TEST(ChannelWan, AddedLatencyDelaysEachMessage) {
  auto so = test::server_options();
  so.added_latency = 150ms;  // server -> client
  ChannelServer server(so);
  server.on_message([](std::shared_ptr<Connection> c, Message m) { c->send(std::move(m)); });
  server.start();
  auto o = test::client_options(server.port(), test::test_pki().site_a);
  o.added_latency = 100ms;  // client -> server
  ChannelClient client(o);
  client.connect();
  for (int i = 0; i < 2; ++i) {
    const auto t0 = Clock::now();
    client.send(Message{"ping", {}, {}});
    ASSERT_TRUE(client.receive(10s).has_value());
    const auto rtt = Clock::now() - t0;
    EXPECT_GE(rtt, 250ms);
    EXPECT_LT(rtt, 2s);
  }
  client.close();
  server.stop();
}

}  // namespace longhaul::transport

namespace longhaul::transport {

// WebSocket pings keep a quiet connection alive well past the idle timeout (both ends always
// have a read pending, so pings are answered); a message still flows afterwards.
TEST(ChannelWan, PingsKeepAQuietConnectionAlive) {
  auto so = test::server_options();
  so.idle_timeout = std::chrono::seconds(1);  // ping after 0.5 s of silence, drop after 1 s
  ChannelServer server(so);
  std::atomic<int> closed{0};
  server.on_close([&](std::shared_ptr<Connection>, std::string) { ++closed; });
  server.on_message([](std::shared_ptr<Connection> c, Message m) { c->send(std::move(m)); });
  server.start();
  auto o = test::client_options(server.port(), test::test_pki().site_a);
  o.idle_timeout = std::chrono::seconds(1);
  ChannelClient client(o);
  client.connect();
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_TRUE(client.connected());
  EXPECT_EQ(closed.load(), 0);
  client.send(Message{"ping", {}, {}});
  EXPECT_TRUE(client.receive(std::chrono::seconds(5)).has_value());
  client.close();
  server.stop();
}

}  // namespace longhaul::transport
