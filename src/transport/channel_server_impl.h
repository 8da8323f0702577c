// ChannelServer's shared state (sessions hold a shared_ptr to it).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <map>

#include "transport/channel_server.h"

namespace longhaul::transport {

struct ChannelServer::Impl : std::enable_shared_from_this<ChannelServer::Impl> {
  explicit Impl(ServerOptions o) : options(std::move(o)), ssl_ctx(make_server_tls_context(options.tls)), acceptor(ioc) {}

  ServerOptions options;
  boost::asio::io_context ioc;
  boost::asio::ssl::context ssl_ctx;
  boost::asio::ip::tcp::acceptor acceptor;
  HttpRouteTable routes;
  std::vector<std::thread> threads;
  std::atomic<bool> stopped{false};
  std::atomic<std::size_t> sessions{0};

  OpenFn on_open;
  MessageFn on_message;
  CloseFn on_close;
  RejectFn on_reject;

  mutable std::mutex mu;                           // guards the members below
  std::set<std::shared_ptr<Connection>> conns;     // open WebSocket connections
  struct RememberedKeys {
    std::unordered_set<std::string> keys;
    std::deque<std::string> order;                 // FIFO for eviction
  };
  std::map<std::string, RememberedKeys> keys;      // by peer id: no peer can evict another's

  void reject(const std::string& peer, const std::string& reason);
  bool allowed(const std::string& peer_id) const;
  ConnectionLimits limits() const;
  // Registers a new WebSocket connection and starts it.
  void adopt(std::shared_ptr<Connection> c);
  void deliver(std::shared_ptr<Connection> c, Message m);
};

}  // namespace longhaul::transport
