// The coordinator's single port: TLS 1.3 with mutual authentication, serving WebSocket
// upgrades on ws_path (framed Messages, see message.h) and plain HTTPS routes (route table).
// A client must present a certificate that chains to the run's CA (else the TLS handshake
// fails). Then its identity (CN) and role (subject OU, see tls_context.h) decide what it may do:
//   site/coordinator certificates on allowed_peers (empty = any): WebSocket and HTTPS routes;
//   operator certificates on allowed_operators (empty = any): HTTPS routes only (read-only);
// anything else completes the handshake and gets HTTP 403 whose body (and X-Longhaul-Refusal
// header) says why, so the client can tell its user. Every refusal is logged with the peer and
// the reason, and reported to on_reject. Both lists can be replaced while running.
//
// Optionally a plain-HTTP listener (plain_http_bind, loopback only: for SSH tunnels to a
// dashboard) serves the GET routes and nothing else, without authentication.
//
// Exactly-once: a message whose header has a string "idempotency_key" is delivered to
// on_message at most once per (peer, key) among that peer's last kRememberedKeys keys, and is always
// answered with an ack (type "__ack") so the sender can stop retrying.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "transport/connection.h"
#include "transport/http_route_table.h"
#include "transport/tls_context.h"

namespace longhaul::transport {

inline constexpr std::size_t kRememberedKeys = 4096;  // idempotency keys remembered per peer (FIFO)
inline constexpr std::size_t kMaxIdempotencyKeyBytes = 256;
inline constexpr const char* kAckType = "__ack";
inline constexpr const char* kRefusalHeader = "X-Longhaul-Refusal";  // the reason of a 403, one line

struct ServerOptions {
  std::string bind = "127.0.0.1";                  // listen address
  uint16_t port = 0;                               // 0 = ephemeral (see port())
  std::string ws_path = "/v1/ws";                  // WebSocket endpoint
  TlsFiles tls;                                    // CA, server cert, server key
  std::vector<std::string> allowed_peers;          // site CNs admitted (rounds + HTTPS); empty = any
  std::vector<std::string> allowed_operators;      // operator CNs admitted (HTTPS GET only); empty = any
  std::string plain_http_bind;                     // loopback IP for plain-HTTP GETs; empty = off
  uint16_t plain_http_port = 0;                    // its port; 0 = ephemeral (see plain_http_port())
  uint64_t max_message_bytes = 1ull << 30;         // per wire message, bytes
  uint64_t max_queued_bytes = 2ull << 30;          // per connection send queue, bytes
  // Concurrent connections in all: open WebSockets plus sessions still in TLS or HTTP (HTTPS
  // requests included). Beyond it a new connection is closed at once (logged).
  std::size_t max_connections = 256;
  // ... and per authenticated identity (certificate CN): one site or operator cannot hold the
  // budget of the others. A site needs 1 (2 briefly while it replaces a dropped connection); a
  // browser opens up to 6 keep-alive connections per host. Counted after the TLS handshake.
  std::size_t max_connections_per_identity = 8;
  // Connections still in their TLS handshake (not yet authenticated): in all, and from one
  // source IP address. Beyond either, a new connection is closed at once (logged): anonymous
  // peers cannot hold the connection budget with slow handshakes.
  std::size_t max_pending_handshakes = 64;
  std::size_t max_handshakes_per_address = 8;
  std::chrono::seconds handshake_timeout{10};      // TLS + HTTP request + WebSocket handshake
  std::chrono::seconds idle_timeout{60};           // silent this long => dropped; pings at half
  uint64_t rate_limit_bytes_per_s = 0;             // WAN emulation per connection, 0 = off
  std::chrono::milliseconds added_latency{0};      // WAN emulation one-way latency per message
  int threads = 1;                                 // I/O threads
  // Backpressure: a connection reads its next message only when fewer than this many of its
  // messages are unhandled (the on_message consumer calls Connection::message_handled()).
  // 0 = no backpressure (on_message consumes at once).
  std::size_t max_unhandled_messages = 0;
  // Payloads of at least spool.min_bytes are written to unnamed files in spool.dir as they
  // arrive (payload_spool.h): memory per receiving connection is one read chunk, not a payload.
  // The receiver calls load_payload() when it handles the message. Default: off.
  SpoolPolicy spool;
};

class ChannelServer {
 public:
  using OpenFn = std::function<void(std::shared_ptr<Connection>)>;
  using MessageFn = Connection::MessageFn;
  using CloseFn = Connection::CloseFn;
  using RejectFn = std::function<void(const std::string& peer, const std::string& reason)>;

  explicit ChannelServer(ServerOptions options);  // validates options, loads TLS files
  ~ChannelServer();
  ChannelServer(const ChannelServer&) = delete;
  ChannelServer& operator=(const ChannelServer&) = delete;

  // Set before start(). Handlers run on I/O threads; keep them short.
  void add_route(std::string method, std::string path, HttpHandler handler);
  void on_open(OpenFn fn) { on_open_ = std::move(fn); }
  void on_message(MessageFn fn) { on_message_ = std::move(fn); }
  void on_close(CloseFn fn) { on_close_ = std::move(fn); }
  void on_reject(RejectFn fn) { on_reject_ = std::move(fn); }

  void start();              // binds, listens, starts the I/O threads
  uint16_t port() const;     // the bound port (after start)
  void stop();               // closes connections (grace ~1 s), joins threads; idempotent
  // Abortively drops every WebSocket connection (operator kick, fault injection in tests).
  void drop_connections(const std::string& reason);
  std::size_t connection_count() const;
  // Replaces the site allow-list (thread-safe, any time): new connections are judged by it, and
  // open WebSocket connections of identities no longer allowed are closed with the reason.
  // Returns how many were closed.
  std::size_t set_allowed_peers(std::vector<std::string> peers);
  // Replaces the operator allow-list (thread-safe); operators hold no WebSocket connections.
  void set_allowed_operators(std::vector<std::string> operators);
  uint16_t plain_http_port() const;  // the plain-HTTP listener's bound port; 0 when off

  // Internal (used by the session code).
  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
  OpenFn on_open_;
  MessageFn on_message_;
  CloseFn on_close_;
  RejectFn on_reject_;
};

}  // namespace longhaul::transport
