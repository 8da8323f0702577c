// WAN emulation in both directions of one client connection (ClientOptions::rate_limit_* /
// added_latency for sends, receive_* for what the server sends), on real TLS loopback sockets.
// Only lower bounds on time: an emulated link can be slower than asked (a busy machine), never
// faster.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "transport/channel_test_util.h"

namespace longhaul::transport {
namespace {
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// N bytes up at R and N bytes back down at R: each direction takes at least N / R.
TEST(ChannelLinkEmulation, BothDirectionsArePacedAtTheRate) {
  ChannelServer server(test::server_options());
  std::promise<Clock::time_point> server_got;
  server.on_message([&](std::shared_ptr<Connection> c, Message m) {
    server_got.set_value(Clock::now());
    c->send(std::move(m));  // unpaced on the server: all the download's pacing is the client's
  });
  server.start();
  auto o = test::client_options(server.port(), test::test_pki().site_a);
  const uint64_t rate = 2 << 20;  // 2 MiB/s each way
  o.rate_limit_bytes_per_s = rate;
  o.receive_rate_limit_bytes_per_s = rate;
  ChannelClient client(o);
  client.connect();
  const uint64_t bytes = 1 << 20;  // 0.5 s at the rate, each way
  Bytes payload(bytes);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>(i * 7);
  auto got = server_got.get_future();
  const auto t0 = Clock::now();
  client.send(Message{"upload", {}, payload});
  ASSERT_EQ(got.wait_for(30s), std::future_status::ready);
  const auto t_server = got.get();
  auto back = client.receive(30s);
  const auto t_back = Clock::now();
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->payload, payload);
  const double min_s = double(bytes) / double(rate);
  EXPECT_GE(seconds(t_server - t0), min_s) << "upload faster than the emulated rate";
  EXPECT_GE(seconds(t_back - t_server), min_s) << "download faster than the emulated rate";
  client.close();
  server.stop();
}

// One-way latency each way: a round trip takes at least their sum, the echo at least the
// receive latency after the server sent it.
TEST(ChannelLinkEmulation, LatencyIsAddedInBothDirections) {
  ChannelServer server(test::server_options());
  std::atomic<int64_t> server_sent_ns{0};
  server.on_message([&](std::shared_ptr<Connection> c, Message m) {
    server_sent_ns = Clock::now().time_since_epoch().count();
    c->send(std::move(m));
  });
  server.start();
  auto o = test::client_options(server.port(), test::test_pki().site_a);
  o.added_latency = 100ms;          // client -> server
  o.receive_added_latency = 150ms;  // server -> client
  ChannelClient client(o);
  client.connect();
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    client.send(Message{"ping", {{"i", i}}, {}});
    auto r = client.receive(10s);
    const auto t1 = Clock::now();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->header["i"], i);
    EXPECT_GE(t1 - t0, 250ms);
    EXPECT_GE(t1 - Clock::time_point(Clock::duration(server_sent_ns.load())), 150ms);
  }
  client.close();
  server.stop();
}

// Acks come down the emulated link too: send_reliable waits at least the round trip.
TEST(ChannelLinkEmulation, AcksTravelTheEmulatedLink) {
  ChannelServer server(test::server_options());
  server.start();
  auto o = test::client_options(server.port(), test::test_pki().site_a);
  o.added_latency = 60ms;
  o.receive_added_latency = 90ms;
  ChannelClient client(o);
  client.connect();
  const auto t0 = Clock::now();
  client.send_reliable(Message{"upload", {{"idempotency_key", "k1"}}, Bytes(10)}, 10s);
  EXPECT_GE(Clock::now() - t0, 150ms);
  client.close();
  server.stop();
}

// The server sends a message and closes: the close comes down the link behind the message, so
// by the time the client sees the connection gone, the message is already in its inbox.
TEST(ChannelLinkEmulation, CloseDoesNotOvertakeMessages) {
  ChannelServer server(test::server_options());
  std::thread closer;
  struct JoinOnExit {
    std::thread& t;
    ~JoinOnExit() {
      if (t.joinable()) t.join();
    }
  } join_closer{closer};
  server.on_message([&](std::shared_ptr<Connection> c, Message) {
    c->send(Message{"bye", {}, Bytes(64 << 10)});
    // A graceful close drops what is still queued: close once "bye" is on the wire.
    closer = std::thread([c] {
      while (c->queued_bytes() > 0) std::this_thread::sleep_for(1ms);
      c->close("done");
    });
  });
  server.start();
  auto o = test::client_options(server.port(), test::test_pki().site_a);
  o.receive_added_latency = 300ms;
  o.receive_rate_limit_bytes_per_s = 1 << 20;
  ChannelClient client(o);
  client.connect();
  const auto t0 = Clock::now();
  client.send(Message{"hello", {}, {}});
  std::optional<Message> bye;
  while (Clock::now() - t0 < 20s) {
    bye = client.receive(10ms);
    if (bye) break;
    if (!client.connected()) {
      bye = client.receive(0ms);
      ASSERT_TRUE(bye.has_value()) << "the close overtook the message on the emulated link";
      break;
    }
  }
  ASSERT_TRUE(bye.has_value());
  EXPECT_EQ(bye->type, "bye");
  EXPECT_GE(Clock::now() - t0, 300ms);
  while (client.connected() && Clock::now() - t0 < 20s) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(client.connected());
  client.close();
  server.stop();
}

// Messages on the emulated link count against the inbox cap: two that together exceed it drop the
// connection although the first has not been delivered yet; the first is still delivered.
TEST(ChannelLinkEmulation, InboxCapCountsMessagesOnTheLink) {
  ChannelServer server(test::server_options());
  server.on_message([](std::shared_ptr<Connection> c, Message) {
    c->send(Message{"a", {}, Bytes(600 << 10)});
    c->send(Message{"b", {}, Bytes(600 << 10)});
  });
  server.start();
  auto o = test::client_options(server.port(), test::test_pki().site_a);
  o.max_inbox_bytes = 1 << 20;
  o.receive_added_latency = 500ms;
  ChannelClient client(o);
  client.connect();
  client.send(Message{"hello", {}, {}});
  const auto t0 = Clock::now();
  while (client.connected() && Clock::now() - t0 < 20s) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(client.connected());
  auto a = client.receive(1s);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->type, "a");
  EXPECT_FALSE(client.receive(600ms).has_value());
  client.close();
  server.stop();
}

}  // namespace
}  // namespace longhaul::transport
