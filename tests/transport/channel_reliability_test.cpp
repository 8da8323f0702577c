// Exactly-once delivery: an upload cut off mid-transfer (a real TCP reset from a proxy) is
// retried by the client and delivered to the server exactly once; a repeated key is acked
// without redelivery.
#include <gtest/gtest.h>

#include <map>
#include <mutex>

#include "transport/channel_test_util.h"
#include "transport/tcp_proxy_util.h"

namespace longhaul::transport {
using namespace std::chrono_literals;

namespace {
struct Delivered {
  std::mutex mu;
  std::map<std::string, int> by_key;
  std::map<std::string, Bytes> payload;
};
}  // namespace

TEST(ChannelReliability, UploadCutMidTransferArrivesExactlyOnce) {
  ChannelServer server(test::server_options());
  Delivered d;
  server.on_message([&](std::shared_ptr<Connection>, Message m) {
    std::lock_guard lock(d.mu);
    const std::string key = m.header.value("idempotency_key", "");
    ++d.by_key[key];
    d.payload[key] = std::move(m.payload);
  });
  server.start();
  const uint64_t payload_bytes = 8 << 20;
  // Cut the first connection after 3 MiB of the 8 MiB upload went through.
  test::TcpProxy proxy(server.port(), 3 << 20);
  auto o = test::client_options(proxy.port(), test::test_pki().site_a);
  ChannelClient client(o);

  Bytes payload(payload_bytes);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>((i * 2654435761u) >> 13);
  Message m{"upload", {{"idempotency_key", "run1/r7/site-a/f0"}}, payload};
  client.send_reliable(m, 30s);

  EXPECT_TRUE(proxy.did_cut());
  EXPECT_GE(proxy.connections(), 2) << "the client should have reconnected";
  EXPECT_GT(proxy.upstream_bytes(), payload_bytes + (3 << 20) - (64 << 10)) << "resent in full after the cut";
  // A second send with the same key (e.g. the ack was lost) is acked but not redelivered.
  client.send_reliable(m, 10s);
  std::lock_guard lock(d.mu);
  EXPECT_EQ(d.by_key.size(), 1u);
  EXPECT_EQ(d.by_key["run1/r7/site-a/f0"], 1);
  EXPECT_EQ(d.payload["run1/r7/site-a/f0"], payload);
  client.close();
  server.stop();
}

TEST(ChannelReliability, SendReliableTimesOutWhenTheServerIsGone) {
  std::unique_ptr<ChannelServer> server = std::make_unique<ChannelServer>(test::server_options());
  server->start();
  auto o = test::client_options(server->port(), test::test_pki().site_a);
  o.retry_deadline = 1s;
  ChannelClient client(o);
  client.connect();
  server->stop();
  const auto t0 = std::chrono::steady_clock::now();
  // Each attempt gives up after retry_deadline (1 s); the overall timeout (5 s) leaves room for
  // a second attempt even on a loaded machine. The upper bound only checks that it stops.
  EXPECT_THROW(client.send_reliable(Message{"upload", {{"idempotency_key", "k"}}, {}}, 5s), ChannelError);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s);
  EXPECT_GE(client.attempts(), 2) << "should have retried";
}

}  // namespace longhaul::transport
