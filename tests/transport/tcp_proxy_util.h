// A loopback TCP proxy for fault injection: forwards bytes both ways between its port and a
// target port, and can cut (RST) the first connection once N bytes went client -> server,
// i.e. in the middle of an upload. Real sockets, real TLS passing through untouched.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace longhaul::test {

class TcpProxy {
 public:
  TcpProxy(uint16_t target_port, uint64_t cut_first_after_upstream_bytes);
  ~TcpProxy();
  uint16_t port() const { return port_; }
  int connections() const { return connections_.load(); }
  bool did_cut() const { return cut_.load(); }
  uint64_t upstream_bytes() const { return upstream_.load(); }  // all connections

 private:
  void accept_loop();
  void pump(std::shared_ptr<boost::asio::ip::tcp::socket> from, std::shared_ptr<boost::asio::ip::tcp::socket> to,
            bool upstream, bool first);

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0, target_port_;
  uint64_t cut_after_;
  std::atomic<int> connections_{0};
  std::atomic<bool> cut_{false}, stopping_{false};
  std::atomic<uint64_t> upstream_{0}, first_upstream_{0};
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<std::shared_ptr<boost::asio::ip::tcp::socket>> sockets_;
  std::thread acceptor_thread_;
};

}  // namespace longhaul::test
