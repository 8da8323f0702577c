#include "transport/tcp_proxy_util.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

namespace longhaul::test {
namespace net = boost::asio;
using tcp = net::ip::tcp;

TcpProxy::TcpProxy(uint16_t target_port, uint64_t cut_first_after_upstream_bytes)
    : acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)),
      target_port_(target_port),
      cut_after_(cut_first_after_upstream_bytes) {
  port_ = acceptor_.local_endpoint().port();
  acceptor_thread_ = std::thread([this] { accept_loop(); });
}

TcpProxy::~TcpProxy() {
  stopping_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  // Wake a blocked accept with a throwaway connection.
  tcp::socket poke(ioc_);
  poke.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_), ec);
  acceptor_thread_.join();
  {
    std::lock_guard lock(mu_);
    for (auto& s : sockets_) {
      s->shutdown(tcp::socket::shutdown_both, ec);
      s->close(ec);
    }
  }
  for (auto& t : threads_) t.join();
}

void TcpProxy::accept_loop() {
  for (int n = 0;; ++n) {
    auto client = std::make_shared<tcp::socket>(ioc_);
    boost::system::error_code ec;
    acceptor_.accept(*client, ec);
    if (ec || stopping_) return;
    auto server = std::make_shared<tcp::socket>(ioc_);
    server->connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), target_port_), ec);
    if (ec) continue;
    ++connections_;
    std::lock_guard lock(mu_);
    sockets_.push_back(client);
    sockets_.push_back(server);
    const bool first = n == 0;
    threads_.emplace_back([this, client, server, first] { pump(client, server, true, first); });
    threads_.emplace_back([this, client, server, first] { pump(server, client, false, first); });
  }
}

void TcpProxy::pump(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to, bool upstream, bool first) {
  std::vector<char> buf(64 << 10);
  boost::system::error_code ec;
  for (;;) {
    const std::size_t n = from->read_some(net::buffer(buf), ec);
    if (ec) break;
    net::write(*to, net::buffer(buf.data(), n), ec);
    if (ec) break;
    if (upstream) {
      upstream_ += n;
      if (first && (first_upstream_ += n) >= cut_after_ && !cut_.exchange(true)) {
        // Abortive close of both legs: the peers see a reset mid-stream, like a dropped link.
        from->set_option(net::socket_base::linger(true, 0), ec);
        to->set_option(net::socket_base::linger(true, 0), ec);
        from->close(ec);
        to->close(ec);
        return;
      }
    }
  }
  from->shutdown(tcp::socket::shutdown_receive, ec);
  to->shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace longhaul::test
