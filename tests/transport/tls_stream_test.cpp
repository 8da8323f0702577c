// TlsStream on real loopback sockets with the test PKI: bulk data both ways, the end-of-stream
// contract (close_notify = eof, a bare TCP close = stream_truncated), and hostile bytes.
#include "transport/tls_stream.h"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <vector>

#include "channel_test_util.h"
#include "transport/tls_context.h"

namespace longhaul::transport {
namespace {
namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);

std::vector<char> pattern(std::size_t n, int seed) {
  std::vector<char> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<char>((i * 131 + seed) ^ (i >> 9));
  return v;
}

// A listening socket on 127.0.0.1 and TLS contexts from the test PKI.
struct Loopback {
  net::io_context ioc;
  tcp::acceptor acceptor{ioc, {net::ip::make_address("127.0.0.1"), 0}};
  net::ssl::context server_ctx = make_server_tls_context(test::test_pki().server);
  net::ssl::context client_ctx = make_client_tls_context(test::test_pki().site_a);
  uint16_t port() const { return acceptor.local_endpoint().port(); }

  net::awaitable<TlsStream> connect_client() {
    TlsStream s(beast::tcp_stream(ioc), client_ctx);
    co_await s.next_layer().async_connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port()), net::use_awaitable);
    set_client_peer_name(s.native_handle(), "127.0.0.1");
    co_await s.async_handshake(net::ssl::stream_base::client, net::use_awaitable);
    co_return s;
  }
  net::awaitable<TlsStream> accept_server() {
    tcp::socket sock = co_await acceptor.async_accept(net::use_awaitable);
    TlsStream s(beast::tcp_stream(std::move(sock)), server_ctx);
    co_await s.async_handshake(net::ssl::stream_base::server, net::use_awaitable);
    co_return s;
  }
  // Runs both sides to completion (or 30 s); rethrows the first exception.
  void run(net::awaitable<void> server, net::awaitable<void> client) {
    std::exception_ptr err;
    auto keep = [&err](std::exception_ptr e) {
      if (e && !err) err = e;
    };
    net::co_spawn(ioc, std::move(server), keep);
    net::co_spawn(ioc, std::move(client), keep);
    ioc.run_for(30s);
    ASSERT_TRUE(ioc.stopped()) << "did not finish in 30 s";
    if (err) std::rethrow_exception(err);
  }
};

TEST(TlsStream, BulkBothWaysThenCloseNotifyReadsAsEof) {
  Loopback lb;
  const auto up = pattern(3 * kTlsFlushBytes + 12345, 1), down = pattern(5 * kSocketReadBytes + 77, 2);
  std::vector<char> got_up(up.size()), got_down(down.size());
  error_code server_end;
  lb.run(
      [&]() -> net::awaitable<void> {
        TlsStream s = co_await lb.accept_server();
        co_await net::async_read(s, net::buffer(got_up), net::use_awaitable);
        co_await net::async_write(s, net::buffer(down), net::use_awaitable);
        char one;
        auto [ec, n] = co_await s.async_read_some(net::buffer(&one, 1), kTuple);
        server_end = ec;
      }(),
      [&]() -> net::awaitable<void> {
        TlsStream s = co_await lb.connect_client();
        co_await net::async_write(s, net::buffer(up), net::use_awaitable);
        co_await net::async_read(s, net::buffer(got_down), net::use_awaitable);
        co_await s.async_shutdown(net::use_awaitable);
      }());
  EXPECT_EQ(got_up, up);
  EXPECT_EQ(got_down, down);
  EXPECT_EQ(server_end, net::error::eof) << server_end.message();
}

TEST(TlsStream, TcpCloseWithoutCloseNotifyIsTruncated) {
  Loopback lb;
  const auto data = pattern(100000, 3);
  std::vector<char> got(data.size());
  error_code server_end;
  lb.run(
      [&]() -> net::awaitable<void> {
        TlsStream s = co_await lb.accept_server();
        co_await net::async_read(s, net::buffer(got), net::use_awaitable);
        char one;
        auto [ec, n] = co_await s.async_read_some(net::buffer(&one, 1), kTuple);
        server_end = ec;
      }(),
      [&]() -> net::awaitable<void> {
        TlsStream s = co_await lb.connect_client();
        co_await net::async_write(s, net::buffer(data), net::use_awaitable);
        s.next_layer().socket().close();  // no close_notify: an attacker or a crash cut the stream
      }());
  EXPECT_EQ(got, data);
  EXPECT_EQ(server_end, net::ssl::error::stream_truncated) << server_end.message();
}

TEST(TlsStream, NonTlsBytesFailTheHandshake) {
  Loopback lb;
  error_code hs;
  lb.run(
      [&]() -> net::awaitable<void> {
        tcp::socket sock = co_await lb.acceptor.async_accept(net::use_awaitable);
        TlsStream s(beast::tcp_stream(std::move(sock)), lb.server_ctx);
        auto [ec] = co_await s.async_handshake(net::ssl::stream_base::server, kTuple);
        hs = ec;
      }(),
      [&]() -> net::awaitable<void> {
        tcp::socket sock(lb.ioc);
        co_await sock.async_connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), lb.port()), net::use_awaitable);
        const std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        co_await net::async_write(sock, net::buffer(http), net::use_awaitable);
        char buf[256];
        co_await sock.async_read_some(net::buffer(buf), kTuple);  // the alert, or EOF
      }());
  ASSERT_TRUE(hs);
  EXPECT_EQ(hs.category(), net::error::get_ssl_category()) << hs.message();
}

// Client -> relay -> server; the relay flips one byte of the client's stream at flip_at, well
// after the handshake. Returns the server's read error. server_waits: the server starts reading
// only once everything has arrived, so the tampered record is met while decrypting the records
// after the first one of a read (see TlsStream::async_read_some), not as the first one.
error_code tampered_stream_read_error(std::size_t flip_at, bool server_waits) {
  Loopback lb;
  tcp::acceptor relay(lb.ioc, {net::ip::make_address("127.0.0.1"), 0});
  const auto data = pattern(200000, 4);
  std::vector<char> got(data.size());
  error_code server_read;
  auto pump = [](tcp::socket& from, tcp::socket& to, std::size_t flip_at) -> net::awaitable<void> {
    std::vector<char> buf(65536);
    std::size_t seen = 0;
    for (;;) {
      auto [ec, n] = co_await from.async_read_some(net::buffer(buf), kTuple);
      if (ec) break;
      if (flip_at >= seen && flip_at < seen + n) buf[flip_at - seen] ^= 0x01;
      seen += n;
      auto [wec, wn] = co_await net::async_write(to, net::buffer(buf.data(), n), kTuple);
      if (wec) break;
    }
    error_code ignored;
    to.shutdown(tcp::socket::shutdown_send, ignored);
  };
  tcp::socket in(lb.ioc), out(lb.ioc);  // the relay's two legs; outlive every coroutine
  net::co_spawn(lb.ioc, [&]() -> net::awaitable<void> {
    in = co_await relay.async_accept(net::use_awaitable);
    co_await out.async_connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), lb.port()), net::use_awaitable);
    net::co_spawn(lb.ioc, pump(out, in, SIZE_MAX), net::detached);
    co_await pump(in, out, flip_at);
  }, net::detached);
  lb.run(
      [&]() -> net::awaitable<void> {
        TlsStream s = co_await lb.accept_server();
        if (server_waits) {
          net::steady_timer t(lb.ioc, std::chrono::milliseconds(300));
          co_await t.async_wait(net::use_awaitable);
        }
        auto [ec, n] = co_await net::async_read(s, net::buffer(got), kTuple);
        server_read = ec;
      }(),
      [&]() -> net::awaitable<void> {
        TlsStream s(beast::tcp_stream(lb.ioc), lb.client_ctx);
        co_await s.next_layer().async_connect(relay.local_endpoint(), net::use_awaitable);
        set_client_peer_name(s.native_handle(), "127.0.0.1");
        co_await s.async_handshake(net::ssl::stream_base::client, net::use_awaitable);
        co_await net::async_write(s, net::buffer(data), kTuple);
        s.next_layer().socket().close();
      }());
  return server_read;
}

TEST(TlsStream, TamperedRecordIsRejected) {
  for (const std::size_t at : {100000, 60011, 140007}) {
    const error_code ec = tampered_stream_read_error(at, false);
    ASSERT_TRUE(ec) << at;
    EXPECT_EQ(ec.category(), net::error::get_ssl_category()) << at << ": " << ec.message();
  }
}

// The tampered record comes after good ones in the same socket read: the read returns the good
// records' data, and the next one fails as tampering (it said "unexpected result" before: the
// failure was cleared while draining, and OpenSSL does not repeat it).
TEST(TlsStream, TamperedRecordMetWhileDrainingARead) {
  for (const std::size_t at : {100000, 60011, 140007}) {
    const error_code ec = tampered_stream_read_error(at, true);
    ASSERT_TRUE(ec) << at;
    EXPECT_EQ(ec.category(), net::error::get_ssl_category()) << at << ": " << ec.message();
    EXPECT_NE(ec.message(), "unexpected result") << at;
  }
}

}  // namespace
}  // namespace longhaul::transport
