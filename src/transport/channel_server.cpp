#include <pthread.h>

#include "transport/channel_server.h"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/error.h"
#include "common/log.h"
#include "transport/channel_server_impl.h"
#include "transport/server_session.h"

namespace longhaul::transport {
namespace net = boost::asio;
using tcp = net::ip::tcp;

void ChannelServer::Impl::reject(const std::string& peer, const std::string& reason) {
  LH_LOG(Warn, "channel") << "refused " << peer << ": " << reason;
  if (on_reject) on_reject(peer, reason);
}

namespace {
bool listed(const std::vector<std::string>& list, const std::string& id) {
  return list.empty() || std::find(list.begin(), list.end(), id) != list.end();
}
}  // namespace

ChannelServer::Impl::Access ChannelServer::Impl::access(const std::string& peer_id, const std::string& role) const {
  Access a;
  if (peer_id.empty()) {
    a.reason = "the certificate carries no identity (CN)";
    return a;
  }
  std::lock_guard lock(acl_mu);
  if (role == kOperatorRole) {
    a.read = listed(allowed_operators, peer_id);
    a.reason = a.read ? "operator identity '" + peer_id + "' is read-only: it cannot join rounds"
                      : "operator identity '" + peer_id + "' is not on the operator allow-list";
    return a;
  }
  a.read = a.join = listed(allowed_peers, peer_id);
  if (!a.join) a.reason = "certificate identity '" + peer_id + "' is not on the allow-list";
  return a;
}

ConnectionLimits ChannelServer::Impl::limits() const {
  ConnectionLimits l = connection_limits(options, options.handshake_timeout);
  l.max_unhandled_messages = options.max_unhandled_messages;
  l.spool = options.spool;
  return l;
}

void ChannelServer::Impl::adopt(std::shared_ptr<Connection> c) {
  bool stopping = false;
  {
    std::lock_guard lock(mu);
    conns.insert(c);
    stopping = stopped.load();  // stop() began while this session was still handshaking
  }
  std::weak_ptr<Impl> weak = weak_from_this();
  c->start(
      [weak](std::shared_ptr<Connection> conn, Message m) {
        if (auto self = weak.lock()) self->deliver(std::move(conn), std::move(m));
      },
      [weak](std::shared_ptr<Connection> conn, std::string reason) {
        auto self = weak.lock();
        if (!self) return;
        {
          std::lock_guard lock(self->mu);
          self->conns.erase(conn);
        }
        if (self->on_close) self->on_close(conn, reason);
      });
  LH_LOG(Info, "channel") << "peer '" << c->peer_id() << "' (" << c->peer_address() << ") connected";
  if (stopping) {
    c->close("server stopping");
    return;
  }
  if (on_open) on_open(c);
}

void ChannelServer::Impl::deliver(std::shared_ptr<Connection> c, Message m) {
  const auto it = m.header.find("idempotency_key");
  if (it == m.header.end() || !it->is_string()) {
    if (on_message) on_message(std::move(c), std::move(m));
    return;
  }
  const std::string key = it->get<std::string>();
  if (key.size() > kMaxIdempotencyKeyBytes) {  // remembered keys must stay small
    c->message_handled();
    c->close("refused message: idempotency_key over " + std::to_string(kMaxIdempotencyKeyBytes) + " bytes");
    return;
  }
  bool fresh = false;
  {
    std::lock_guard lock(mu);
    RememberedKeys& r = keys[c->peer_id()];
    fresh = r.keys.insert(key).second;
    if (fresh) {
      r.order.push_back(key);
      if (r.order.size() > kRememberedKeys) {
        r.keys.erase(r.order.front());
        r.order.pop_front();
      }
    }
  }
  if (fresh) {
    if (on_message) on_message(c, std::move(m));
  } else {
    LH_LOG(Info, "channel") << "peer '" << c->peer_id() << "': duplicate message key '" << key
                            << "' acked without redelivery";
    c->message_handled();  // never reaches the consumer
  }
  try {
    c->send(Message{kAckType, {{"idempotency_key", key}}, {}});
  } catch (const ChannelError& e) {
    LH_LOG(Warn, "channel") << "peer '" << c->peer_id() << "': cannot ack '" << key << "': " << e.what();
  }
}

bool ChannelServer::Impl::begin_handshake(const std::string& ip, std::string* why) {
  std::lock_guard lock(hs_mu);
  std::size_t& mine = handshakes_by_address[ip];
  if (handshakes >= options.max_pending_handshakes) {
    *why = "too many pending TLS handshakes (max_pending_handshakes " + std::to_string(options.max_pending_handshakes) + ")";
  } else if (mine >= options.max_handshakes_per_address) {
    *why = "too many pending TLS handshakes from " + ip + " (max_handshakes_per_address " +
           std::to_string(options.max_handshakes_per_address) + ")";
  } else {
    ++mine;
    ++handshakes;
    return true;
  }
  if (mine == 0) handshakes_by_address.erase(ip);
  return false;
}

bool ChannelServer::Impl::begin_identity_session(const std::string& identity, std::string* why) {
  std::lock_guard lock(mu);
  std::size_t mine = sessions_by_identity[identity];
  for (const auto& c : conns) mine += c->peer_id() == identity;
  if (mine >= options.max_connections_per_identity) {
    if (sessions_by_identity[identity] == 0) sessions_by_identity.erase(identity);
    *why = "too many connections from identity '" + identity + "' (max_connections_per_identity " +
           std::to_string(options.max_connections_per_identity) + ")";
    return false;
  }
  ++sessions_by_identity[identity];
  return true;
}

void ChannelServer::Impl::end_identity_session(const std::string& identity) {
  std::lock_guard lock(mu);
  if (auto it = sessions_by_identity.find(identity); it != sessions_by_identity.end() && --it->second == 0)
    sessions_by_identity.erase(it);
}

std::size_t ChannelServer::Impl::open_count() const {
  std::lock_guard lock(mu);
  return conns.size() + sessions.load();
}

void ChannelServer::Impl::end_handshake(const std::string& ip) {
  std::lock_guard lock(hs_mu);
  --handshakes;
  if (auto it = handshakes_by_address.find(ip); it != handshakes_by_address.end() && --it->second == 0)
    handshakes_by_address.erase(it);
}

namespace {

net::awaitable<void> accept_loop(std::shared_ptr<ChannelServer::Impl> impl, bool plain) {
  auto& acceptor = plain ? impl->plain_acceptor : impl->acceptor;
  for (;;) {
    tcp::socket socket(net::make_strand(impl->ioc));
    boost::system::error_code ec;
    co_await acceptor.async_accept(socket, net::redirect_error(net::use_awaitable, ec));
    if (ec == net::error::operation_aborted || impl->stopped) co_return;
    if (ec) {
      LH_LOG(Warn, "channel") << "accept failed: " << ec.message();
      continue;
    }
    if (impl->open_count() >= impl->options.max_connections) {
      boost::system::error_code ep_ec;
      const auto ep = socket.remote_endpoint(ep_ec);
      impl->reject(ep.address().to_string() + ":" + std::to_string(ep.port()),
                   "too many connections (max_connections " + std::to_string(impl->options.max_connections) + ")");
      continue;  // socket closes on scope exit
    }
    auto exec = socket.get_executor();
    if (plain) {
      net::co_spawn(exec, serve_plain_session(impl, std::move(socket)), net::detached);
      continue;
    }
    boost::system::error_code ep_ec;
    const auto ep = socket.remote_endpoint(ep_ec);
    const std::string ip = ep_ec ? "unknown" : ep.address().to_string();
    std::string why;
    if (!impl->begin_handshake(ip, &why)) {
      impl->reject(ip + ":" + std::to_string(ep.port()), why);
      continue;  // socket closes on scope exit
    }
    net::co_spawn(exec, serve_session(impl, std::move(socket), HandshakeSlot(impl, ip)), net::detached);
  }
}

}  // namespace

ChannelServer::ChannelServer(ServerOptions options) {
  if (options.threads < 1) throw UserError("channel server: threads must be >= 1");
  if (options.max_message_bytes < 1024) throw UserError("channel server: max_message_bytes must be >= 1024");
  if (options.ws_path.empty() || options.ws_path[0] != '/') throw UserError("channel server: ws_path must start with '/'");
  if (!options.plain_http_bind.empty()) {
    boost::system::error_code ec;
    const auto a = net::ip::make_address(options.plain_http_bind, ec);
    if (ec || !a.is_loopback())
      throw UserError("channel server: the plain-HTTP listener '" + options.plain_http_bind +
                      "' must be a loopback IP address (127.0.0.1 or ::1): it has no authentication");
  }
  impl_ = std::make_shared<Impl>(std::move(options));
}

ChannelServer::~ChannelServer() { stop(); }

void ChannelServer::add_route(std::string method, std::string path, HttpHandler handler) {
  impl_->routes.add(std::move(method), std::move(path), std::move(handler));
}

void ChannelServer::start() {
  impl_->on_open = on_open_;
  impl_->on_message = on_message_;
  impl_->on_close = on_close_;
  impl_->on_reject = on_reject_;
  boost::system::error_code ec;
  const auto addr = net::ip::make_address(impl_->options.bind, ec);
  if (ec) throw UserError("channel server: bind address '" + impl_->options.bind + "' is not an IP address");
  const tcp::endpoint ep(addr, impl_->options.port);
  auto& a = impl_->acceptor;
  a.open(ep.protocol());
  a.set_option(net::socket_base::reuse_address(true));
  a.bind(ep, ec);
  if (ec)
    throw UserError("channel server: cannot bind " + impl_->options.bind + ":" + std::to_string(impl_->options.port) +
                    ": " + ec.message());
  a.listen(net::socket_base::max_listen_connections);
  net::co_spawn(impl_->ioc, accept_loop(impl_, false), net::detached);
  if (!impl_->options.plain_http_bind.empty()) {
    const tcp::endpoint pep(net::ip::make_address(impl_->options.plain_http_bind), impl_->options.plain_http_port);
    auto& p = impl_->plain_acceptor;
    p.open(pep.protocol());
    p.set_option(net::socket_base::reuse_address(true));
    p.bind(pep, ec);
    if (ec)
      throw UserError("channel server: cannot bind the plain-HTTP listener " + impl_->options.plain_http_bind + ":" +
                      std::to_string(impl_->options.plain_http_port) + ": " + ec.message());
    p.listen(net::socket_base::max_listen_connections);
    net::co_spawn(impl_->ioc, accept_loop(impl_, true), net::detached);
    LH_LOG(Info, "channel") << "plain-HTTP GET routes (no TLS, read-only) on " << impl_->options.plain_http_bind
                            << ":" << plain_http_port();
  }
  for (int i = 0; i < impl_->options.threads; ++i)
    impl_->threads.emplace_back([impl = impl_] {
      pthread_setname_np(pthread_self(), "lh-server-io");  // names show in top -H, perf, gdb
      impl->ioc.run();
    });
  LH_LOG(Info, "channel") << "listening on " << impl_->options.bind << ":" << port() << " (WebSocket "
                          << impl_->options.ws_path << ", TLS 1.3, mutual auth)";
}

uint16_t ChannelServer::port() const {
  boost::system::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void ChannelServer::stop() {
  if (!impl_ || impl_->stopped.exchange(true)) return;
  net::post(impl_->ioc, [impl = impl_] {
    boost::system::error_code ec;
    impl->acceptor.close(ec);
    impl->plain_acceptor.close(ec);
  });
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& c : impl_->conns) c->close("server stopping");
  }
  // Wait (bounded) for open connections to close AND for sessions still in their TLS/WebSocket
  // handshake: those adopt themselves after this point and are closed by adopt(); stopping the
  // io_context under them would leave their sockets open while this object lives.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while ((connection_count() > 0 || impl_->sessions.load() > 0) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  std::lock_guard lock(impl_->mu);
  impl_->conns.clear();
}

void ChannelServer::drop_connections(const std::string& reason) {
  std::lock_guard lock(impl_->mu);
  for (const auto& c : impl_->conns) c->abort(reason);
}

std::size_t ChannelServer::set_allowed_peers(std::vector<std::string> peers) {
  {
    std::lock_guard lock(impl_->acl_mu);
    impl_->allowed_peers = std::move(peers);
  }
  std::vector<std::shared_ptr<Connection>> revoked;
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& c : impl_->conns)
      if (!impl_->access(c->peer_id(), "").join) revoked.push_back(c);
  }
  for (const auto& c : revoked) {
    const std::string why = "identity '" + c->peer_id() + "' was removed from the allow-list";
    LH_LOG(Warn, "channel") << "closing '" << c->peer_id() << "' (" << c->peer_address() << "): " << why;
    c->close(why);
  }
  return revoked.size();
}

void ChannelServer::set_allowed_operators(std::vector<std::string> operators) {
  std::lock_guard lock(impl_->acl_mu);
  impl_->allowed_operators = std::move(operators);
}

uint16_t ChannelServer::plain_http_port() const {
  if (!impl_->plain_acceptor.is_open()) return 0;
  boost::system::error_code ec;
  return impl_->plain_acceptor.local_endpoint(ec).port();
}

std::size_t ChannelServer::connection_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->conns.size();
}

}  // namespace longhaul::transport
