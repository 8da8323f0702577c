// A 256 MiB message over real TLS on loopback arrives intact while the process's memory stays
// bounded. Sender and receiver live in this one process, so the honest floor is the payload
// held twice (the sender's copy and the receiver's); anything a naive implementation adds
// (serializing into a second buffer, reading into a growable buffer then copying) would show
// up as another 256 MiB or more. The bound allows 2x payload + 64 MiB of fixed overhead.
#include <gtest/gtest.h>

#include <future>

#include "transport/channel_test_util.h"

namespace longhaul::transport {
using namespace std::chrono_literals;

namespace {
std::byte pattern(std::size_t i) { return static_cast<std::byte>((i * 0x9E3779B1u) >> 24); }
}  // namespace

TEST(ChannelLarge, Payload256MiBIntactWithBoundedMemory) {
  const std::size_t bytes = 256ull << 20;
  const uint64_t overhead = 64ull << 20;
  ChannelServer server(test::server_options());
  std::promise<std::pair<bool, std::size_t>> result;
  server.on_message([&](std::shared_ptr<Connection>, Message m) {
    bool ok = true;
    for (std::size_t i = 0; i < m.payload.size() && ok; i += 4093) ok = m.payload[i] == pattern(i);
    ok = ok && m.payload.size() == bytes && m.payload.back() == pattern(bytes - 1);
    result.set_value({ok, m.payload.size()});
    // m (the receiver's copy) is freed here, after the peak was reached.
  });
  server.start();
  ChannelClient client(test::client_options(server.port(), test::test_pki().site_a));
  client.connect();

  test::reset_peak_rss();
  const uint64_t base = test::current_rss_bytes();
  {
    Message m{"upload", {{"round", 1}}, Bytes(bytes)};
    for (std::size_t i = 0; i < bytes; ++i) m.payload[i] = pattern(i);
    client.send(std::move(m));
  }
  auto fut = result.get_future();
  ASSERT_EQ(fut.wait_for(120s), std::future_status::ready);
  const auto [ok, size] = fut.get();
  EXPECT_TRUE(ok) << "payload corrupted (size " << size << ")";
  const uint64_t growth = test::peak_rss_bytes() - base;
  std::cout << "peak RSS growth " << (growth >> 20) << " MiB for a " << (bytes >> 20) << " MiB message\n";
  EXPECT_LE(growth, 2 * bytes + overhead) << "memory not bounded: peak grew by " << (growth >> 20) << " MiB";
  EXPECT_GE(growth, bytes) << "the measurement itself is broken (payload not even counted once)";
  client.close();
  server.stop();
}

}  // namespace longhaul::transport
