// Backpressure: with max_unhandled_messages = 1 the server reads a connection's next message
// only after the consumer marked the previous one handled, so a peer that sends faster than the
// consumer works has its messages wait in its own socket, not in the server's memory.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "transport/channel_test_util.h"

namespace longhaul::transport {
using namespace std::chrono_literals;

TEST(ChannelBackpressure, NextMessageIsReadOnlyAfterThePreviousWasHandled) {
  ServerOptions so = test::server_options();
  so.max_unhandled_messages = 1;
  ChannelServer server(so);
  std::mutex mu;
  std::vector<std::shared_ptr<Connection>> pending;  // delivered, not yet handled
  std::atomic<int> delivered{0};
  server.on_message([&](std::shared_ptr<Connection> c, Message) {
    std::lock_guard l(mu);
    pending.push_back(std::move(c));
    ++delivered;
  });
  server.start();
  ChannelClient client(test::client_options(server.port(), test::test_pki().site_a));
  client.connect();
  for (int i = 0; i < 5; ++i) client.send(Message{"m", {{"i", i}}, Bytes(1000)});
  auto wait_for = [&](int n) {
    auto until = std::chrono::steady_clock::now() + 20s;
    while (delivered.load() < n && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
    return delivered.load();
  };
  EXPECT_EQ(wait_for(1), 1);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(delivered.load(), 1) << "read on while the first message was unhandled";
  for (int n = 2; n <= 5; ++n) {
    {
      std::lock_guard l(mu);
      pending.back()->message_handled();
    }
    EXPECT_EQ(wait_for(n), n);
  }
  client.close();
  server.stop();
}

}  // namespace longhaul::transport
