// The channel end to end on loopback with real TLS 1.3: message round trips, HTTPS routes on
// the same port, the wire format's own checks.
#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "transport/channel_test_util.h"
#include "transport/https_get.h"
#include "transport/message.h"

namespace longhaul::transport {
using namespace std::chrono_literals;

TEST(ChannelWire, RoundTripAndCorruptionRejected) {
  Message m{"upload", {{"round", 3}, {"site", "site-a"}}, Bytes(1000, std::byte{7})};
  auto wire = encode_message(m);
  const Message back = decode_message(wire, 1 << 20);
  EXPECT_EQ(back.type, "upload");
  EXPECT_EQ(back.header["round"], 3);
  EXPECT_EQ(back.payload, m.payload);

  for (std::size_t pos : {std::size_t{0}, std::size_t{5}, std::size_t{20}, wire.size() / 2, wire.size() - 1}) {
    auto bad = wire;
    bad[pos] ^= std::byte{0x10};
    EXPECT_THROW(decode_message(bad, 1 << 20), WireError) << "flipped byte " << pos;
  }
  EXPECT_THROW(decode_message(std::span(wire).first(wire.size() - 3), 1 << 20), WireError);
  EXPECT_THROW(decode_message(wire, 500), WireError);  // over the cap: refused before allocating
}

TEST(Channel, MessagesBothWaysAndHttpsOnTheSamePort) {
  ChannelServer server(test::server_options());
  server.add_route("GET", "/healthz", [](const HttpRequest& r) { return HttpResponse{200, "text/plain", "ok " + r.peer_id}; });
  std::promise<std::string> opened;
  server.on_open([&](std::shared_ptr<Connection> c) { opened.set_value(c->peer_id()); });
  server.on_message([](std::shared_ptr<Connection> c, Message m) {
    m.header["echo"] = true;
    c->send(std::move(m));
  });
  server.start();

  ChannelClient client(test::client_options(server.port(), test::test_pki().site_a));
  client.connect();
  EXPECT_TRUE(client.connected());
  EXPECT_EQ(opened.get_future().get(), "site-a");
  for (int i = 0; i < 3; ++i) {
    Bytes payload(3 * kWriteChunk + 17 * i);
    for (std::size_t j = 0; j < payload.size(); ++j) payload[j] = static_cast<std::byte>(j * 31 + i);
    client.send(Message{"ping", {{"i", i}}, payload});
    auto r = client.receive(10s);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->type, "ping");
    EXPECT_EQ(r->header["i"], i);
    EXPECT_EQ(r->header["echo"], true);
    EXPECT_EQ(r->payload, payload);
  }
  EXPECT_FALSE(client.receive(50ms).has_value());

  const std::string base = "https://127.0.0.1:" + std::to_string(server.port());
  const auto ok = https_get(base + "/healthz", test::test_pki().site_b, 5s);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "ok site-b");
  EXPECT_EQ(https_get(base + "/nope", test::test_pki().site_b, 5s).status, 404);
  // HTTPS is authenticated exactly like the WebSocket: an unlisted site gets a 403 and why.
  const auto refused = https_get(base + "/healthz", test::test_pki().site_x, 5s);
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.body.find("'site-x' is not on the allow-list"), std::string::npos) << refused.body;
  client.close();
  server.stop();
}

TEST(Channel, ClientVerifiesTheServerName) {
  ChannelServer server(test::server_options());
  server.start();
  auto o = test::client_options(server.port(), test::test_pki().site_a);
  o.server_name = "evil.example";  // the server's cert is for coordinator/localhost/127.0.0.1
  o.retry_deadline = 0s;
  ChannelClient client(o);
  try {
    client.connect();
    FAIL() << "connected to a server whose certificate does not match";
  } catch (const ConnectError& e) {
    EXPECT_EQ(e.kind(), ConnectFailure::kNameMismatch) << e.what();
    EXPECT_NE(std::string(e.what()).find("does not name 'evil.example'"), std::string::npos) << e.what();
  }
  o.server_name = "localhost";  // DNS SAN: verified by name, with SNI
  ChannelClient by_name(o);
  by_name.connect();
  EXPECT_TRUE(by_name.connected());
  server.stop();
}

}  // namespace longhaul::transport
