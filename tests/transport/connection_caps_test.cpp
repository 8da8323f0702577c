// Authenticated peers cannot hold the server's connections either: ServerOptions::
// max_connections_per_identity caps the open connections (WebSockets and HTTPS sessions) of one
// certificate identity, and max_connections caps them in all, open WebSockets included. Beyond
// either a new connection is closed at once with a logged reason; other identities still get
// in; closing one frees its place.
#include <gtest/gtest.h>

#include <memory>
#include <mutex>

#include "transport/channel_test_util.h"

namespace longhaul::transport {
using namespace std::chrono_literals;
namespace {

struct Reasons {
  std::mutex mu;
  std::vector<std::string> all;
  bool any(const std::string& needle) {
    std::lock_guard lock(mu);
    for (const auto& r : all)
      if (r.find(needle) != std::string::npos) return true;
    return false;
  }
};

// A started server with `o` whose refusals are collected in `reasons`.
std::unique_ptr<ChannelServer> start_server(const ServerOptions& o, Reasons& reasons) {
  auto server = std::make_unique<ChannelServer>(o);
  server->on_reject([&reasons](const std::string& p, const std::string& r) {
    std::lock_guard lock(reasons.mu);
    reasons.all.push_back(p + ": " + r);
  });
  server->start();
  return server;
}

std::unique_ptr<ChannelClient> try_connect(uint16_t port, const TlsFiles& tls);

// Retries for up to 5 s: a closed connection's place is freed when the server notices.
std::unique_ptr<ChannelClient> connect_within_5s(uint16_t port, const TlsFiles& tls) {
  std::unique_ptr<ChannelClient> c;
  for (int i = 0; i < 50 && !c; ++i) {
    c = try_connect(port, tls);
    if (!c) std::this_thread::sleep_for(100ms);
  }
  return c;
}

// Connects a WebSocket client as `tls`; nullptr when the server refused it.
std::unique_ptr<ChannelClient> try_connect(uint16_t port, const TlsFiles& tls) {
  auto o = test::client_options(port, tls);
  o.retry_deadline = 0s;
  auto c = std::make_unique<ChannelClient>(o);
  try {
    c->connect();
  } catch (const ChannelError&) {
    return nullptr;
  }
  // A refusal after the TLS handshake arrives as a close: give it a moment to show.
  for (int i = 0; i < 20 && c->connected(); ++i) std::this_thread::sleep_for(10ms);
  return c->connected() ? std::move(c) : nullptr;
}

TEST(ConnectionCaps, OneIdentityCannotHoldMoreThanItsShare) {
  auto o = test::server_options();
  o.max_connections_per_identity = 2;
  Reasons reasons;
  auto server = start_server(o, reasons);
  auto a1 = try_connect(server->port(), test::test_pki().site_a);
  auto a2 = try_connect(server->port(), test::test_pki().site_a);
  ASSERT_TRUE(a1 && a2);
  EXPECT_FALSE(try_connect(server->port(), test::test_pki().site_a)) << "a third site-a connection is refused";
  EXPECT_TRUE(reasons.any("too many connections from identity 'site-a' (max_connections_per_identity 2)"));
  // Another identity is not affected ...
  auto b = try_connect(server->port(), test::test_pki().site_b);
  EXPECT_TRUE(b) << "site-b gets in while site-a is at its cap";
  // ... and site-a gets its place back once one of its connections closes.
  a1->close();
  a1.reset();
  EXPECT_TRUE(connect_within_5s(server->port(), test::test_pki().site_a));
  server->stop();
}

TEST(ConnectionCaps, OpenWebSocketsCountAgainstMaxConnections) {
  auto o = test::server_options();
  o.max_connections = 2;
  o.max_connections_per_identity = 8;
  Reasons reasons;
  auto server = start_server(o, reasons);
  auto a = try_connect(server->port(), test::test_pki().site_a);
  auto b = try_connect(server->port(), test::test_pki().site_b);
  ASSERT_TRUE(a && b);
  std::this_thread::sleep_for(200ms);  // both sessions adopted as WebSockets
  EXPECT_FALSE(try_connect(server->port(), test::test_pki().site_a)) << "a third connection in all is refused";
  EXPECT_TRUE(reasons.any("too many connections (max_connections 2)"));
  b->close();
  b.reset();
  EXPECT_TRUE(connect_within_5s(server->port(), test::test_pki().site_b));
  server->stop();
}

}  // namespace
}  // namespace longhaul::transport
