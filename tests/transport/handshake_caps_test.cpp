// Anonymous peers cannot hold the server's connections with handshakes they never finish:
// ServerOptions::max_handshakes_per_address caps connections still in their TLS handshake from
// one source IP (max_pending_handshakes caps them in all). Beyond it a new connection is closed
// at once with a logged reason; a finished handshake frees its place at once, so authenticated
// clients are never limited by the cap; closing the stalled sockets frees theirs.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>

#include "transport/channel_test_util.h"

namespace longhaul::transport {
using namespace std::chrono_literals;
namespace {

int raw_connect(uint16_t port) {  // a TCP connection that never starts TLS
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

// True when the server closed `fd` (EOF or reset) within `timeout`.
bool closed_by_server(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char c;
  return ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

TEST(HandshakeCaps, StalledHandshakesFromOneAddressAreCappedAndFreedAgain) {
  auto o = test::server_options();
  o.max_handshakes_per_address = 2;
  o.handshake_timeout = 30s;  // the stalled sockets are not timed out during the test
  ChannelServer server(o);
  std::mutex mu;
  std::vector<std::string> reasons;
  server.on_reject([&](const std::string& p, const std::string& r) {
    std::lock_guard lock(mu);
    reasons.push_back(p + ": " + r);
  });
  server.start();

  // Authenticated clients pass one after another: a finished handshake frees its place.
  for (int i = 0; i < 4; ++i) {
    ChannelClient c(test::client_options(server.port(), test::test_pki().site_a));
    ASSERT_NO_THROW(c.connect()) << i;
    c.close();
  }
  const int a = raw_connect(server.port()), b = raw_connect(server.port());
  std::this_thread::sleep_for(300ms);  // both accepted and waiting in their handshake
  EXPECT_FALSE(closed_by_server(a, 100ms));
  const int third = raw_connect(server.port());
  EXPECT_TRUE(closed_by_server(third, 5000ms)) << "the third stalled handshake from 127.0.0.1 is refused";
  {
    std::lock_guard lock(mu);
    bool named = false;
    for (const auto& r : reasons) named |= r.find("max_handshakes_per_address 2") != std::string::npos;
    EXPECT_TRUE(named) << "the reason is logged";
  }
  // A real client from the same address is refused too while the cap is full ...
  auto co = test::client_options(server.port(), test::test_pki().site_a);
  co.retry_deadline = 0s;
  {
    ChannelClient c(co);
    EXPECT_THROW(c.connect(), ChannelError);
  }
  // ... and gets in once the stalled sockets go.
  ::close(a);
  ::close(b);
  ::close(third);
  bool in = false;
  for (int i = 0; i < 50 && !in; ++i) {
    ChannelClient c(co);
    try {
      c.connect();
      in = true;
    } catch (const ChannelError&) {
      std::this_thread::sleep_for(100ms);
    }
  }
  EXPECT_TRUE(in);
  server.stop();
}

}  // namespace
}  // namespace longhaul::transport
