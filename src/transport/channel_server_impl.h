// ChannelServer's shared state (sessions hold a shared_ptr to it).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <map>

#include "transport/channel_server.h"

namespace longhaul::transport {

struct ChannelServer::Impl : std::enable_shared_from_this<ChannelServer::Impl> {
  explicit Impl(ServerOptions o)
      : options(std::move(o)), ssl_ctx(make_server_tls_context(options.tls)), acceptor(ioc), plain_acceptor(ioc) {
    allowed_peers = options.allowed_peers;
    allowed_operators = options.allowed_operators;
  }

  ServerOptions options;
  boost::asio::io_context ioc;
  boost::asio::ssl::context ssl_ctx;
  boost::asio::ip::tcp::acceptor acceptor;
  boost::asio::ip::tcp::acceptor plain_acceptor;   // plain-HTTP GETs (open only when configured)
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
  std::map<std::string, std::size_t> sessions_by_identity;  // authenticated sessions not yet adopted
  // Takes an authenticated session's place for `identity` (open WebSockets of it count too), or
  // says why not (max_connections_per_identity). end_identity_session gives it back.
  bool begin_identity_session(const std::string& identity, std::string* why);
  void end_identity_session(const std::string& identity);
  std::size_t open_count() const;  // open WebSockets + sessions in progress (max_connections)
  struct RememberedKeys {
    std::unordered_set<std::string> keys;
    std::deque<std::string> order;                 // FIFO for eviction
  };
  std::map<std::string, RememberedKeys> keys;      // by peer id: no peer can evict another's

  std::mutex hs_mu;                                // guards the two handshake counts
  std::size_t handshakes = 0;                      // TLS handshakes in progress
  std::map<std::string, std::size_t> handshakes_by_address;  // ... by source IP
  // Takes a handshake slot for `ip`, or says why not (the caps of ServerOptions).
  bool begin_handshake(const std::string& ip, std::string* why);
  void end_handshake(const std::string& ip);

  mutable std::mutex acl_mu;                       // guards the two allow-lists
  std::vector<std::string> allowed_peers, allowed_operators;

  // What an authenticated identity may do; `reason` says why not (for the 403 and the log).
  struct Access {
    bool read = false;  // HTTPS routes
    bool join = false;  // the WebSocket endpoint
    std::string reason;
  };
  Access access(const std::string& peer_id, const std::string& role) const;

  void reject(const std::string& peer, const std::string& reason);
  ConnectionLimits limits() const;
  // Registers a new WebSocket connection and starts it.
  void adopt(std::shared_ptr<Connection> c);
  void deliver(std::shared_ptr<Connection> c, Message m);
};

// An authenticated session's place under max_connections_per_identity, given back when the
// session ends (a WebSocket is adopted into `conns` first, so its place carries over there).
class IdentitySlot {
 public:
  IdentitySlot(std::shared_ptr<ChannelServer::Impl> impl, std::string id) : impl_(std::move(impl)), id_(std::move(id)) {}
  IdentitySlot(const IdentitySlot&) = delete;
  IdentitySlot& operator=(const IdentitySlot&) = delete;
  ~IdentitySlot() {
    if (impl_) impl_->end_identity_session(id_);
  }

 private:
  std::shared_ptr<ChannelServer::Impl> impl_;
  std::string id_;
};

// One connection's place among the pending handshakes: released once its TLS handshake ended
// (release(), or the destructor on any path out).
class HandshakeSlot {
 public:
  HandshakeSlot(std::shared_ptr<ChannelServer::Impl> impl, std::string ip) : impl_(std::move(impl)), ip_(std::move(ip)) {}
  HandshakeSlot(HandshakeSlot&& o) noexcept : impl_(std::move(o.impl_)), ip_(std::move(o.ip_)) {}
  HandshakeSlot(const HandshakeSlot&) = delete;
  HandshakeSlot& operator=(const HandshakeSlot&) = delete;
  HandshakeSlot& operator=(HandshakeSlot&&) = delete;
  ~HandshakeSlot() { release(); }
  void release() {
    if (impl_) impl_->end_handshake(ip_);
    impl_.reset();
  }

 private:
  std::shared_ptr<ChannelServer::Impl> impl_;
  std::string ip_;
};

}  // namespace longhaul::transport
