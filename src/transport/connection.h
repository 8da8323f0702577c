// One established, authenticated WebSocket-over-TLS connection (either role). Owns the stream;
// runs a read loop (always one read pending, so pings are answered) and a write loop that
// keeps exactly one message in flight, streaming it as frames of kWriteChunk bytes. All work
// runs on the connection's strand; send()/close() may be called from any thread.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "transport/tls_stream.h"
#include "transport/message.h"
#include "transport/rate_limiter.h"

namespace longhaul::transport {

using WsStream = boost::beast::websocket::stream<TlsStream>;

// A recoverable I/O failure: closed connection, full queue, timeout. Callers rebuild the
// connection (the client does so itself) or report it.
class ChannelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr std::size_t kWriteChunk = 1 << 20;  // bytes per WebSocket frame written
inline constexpr std::size_t kReadChunk = kSocketReadBytes;  // bytes per read into the payload (what one TLS read can fill)

struct ConnectionLimits {
  uint64_t max_message_bytes = 1ull << 30;       // whole wire message, bytes; larger => close
  uint64_t max_queued_bytes = 2ull << 30;        // send queue cap, bytes (one message may exceed it alone)
  std::size_t max_queued_messages = 1024;        // send queue cap, messages
  std::chrono::seconds handshake_timeout{10};    // WebSocket handshake and close handshake
  std::chrono::seconds idle_timeout{60};         // no bytes received this long => drop; ping at half
  uint64_t rate_limit_bytes_per_s = 0;           // WAN emulation: send pacing, 0 = unlimited
  std::chrono::milliseconds added_latency{0};    // WAN emulation: each message leaves this much later
  // Backpressure: messages delivered but not yet marked handled (message_handled()) before the
  // read loop stops reading; 0 = no limit (the receiver consumes at once).
  std::size_t max_unhandled_messages = 0;
  SpoolPolicy spool;  // large payloads go to disk as they arrive (payload_spool.h); default off
};

// The limits for a connection made under `o` (ServerOptions or ClientOptions: both carry these
// fields); `handshake` bounds the WebSocket close handshake.
template <class Options>
ConnectionLimits connection_limits(const Options& o, std::chrono::seconds handshake) {
  ConnectionLimits l;
  l.max_message_bytes = o.max_message_bytes;
  l.max_queued_bytes = o.max_queued_bytes;
  l.handshake_timeout = handshake;
  l.idle_timeout = o.idle_timeout;
  l.rate_limit_bytes_per_s = o.rate_limit_bytes_per_s;
  l.added_latency = o.added_latency;
  return l;
}

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using MessageFn = std::function<void(std::shared_ptr<Connection>, Message)>;
  using CloseFn = std::function<void(std::shared_ptr<Connection>, std::string reason)>;

  // ws: handshaken stream. peer_id: the authenticated identity (cert CN) of the other end.
  Connection(WsStream ws, std::string peer_id, std::string peer_address, ConnectionLimits limits);
  ~Connection();

  // Starts the read and write loops; handlers run on the connection's strand (keep them short).
  void start(MessageFn on_message, CloseFn on_close);

  const std::string& peer_id() const { return peer_id_; }
  const std::string& peer_address() const { return peer_address_; }
  // Queues m (thread-safe). Throws ChannelError when closed or when the queue is full.
  void send(Message m) { send_shared(std::make_shared<const Message>(std::move(m))); }
  void send_shared(std::shared_ptr<const Message> m);
  // Graceful close: the message in flight finishes, queued ones are dropped, a close frame
  // with `reason` is sent. Idempotent; thread-safe.
  void close(std::string reason);
  // Abortive close (socket closed now), for shutdown and fault injection.
  void abort(std::string reason);
  bool is_open() const { return open_.load(); }
  // The receiver finished with one delivered message (thread-safe). With
  // max_unhandled_messages > 0 the read loop waits for this before reading on.
  void message_handled();
  uint64_t queued_bytes() const { return queued_bytes_.load(); }

 private:
  struct Outgoing {
    std::shared_ptr<const Message> msg;
    std::chrono::steady_clock::time_point due;  // enqueue time + added latency
    uint64_t wire_bytes;
  };
  boost::asio::awaitable<void> read_loop();
  boost::asio::awaitable<void> write_loop();
  boost::asio::awaitable<void> write_frame(boost::asio::const_buffer buf, bool fin);
  void finish(const std::string& reason);  // on strand: marks closed, fires on_close once

  WsStream ws_;
  std::string peer_id_, peer_address_;
  ConnectionLimits limits_;
  RateLimiter limiter_;
  boost::asio::steady_timer wake_;  // write loop waits on it for work
  boost::asio::steady_timer resume_;  // read loop waits on it while too many messages are unhandled
  std::size_t unhandled_ = 0;         // strand only
  std::deque<Outgoing> queue_;      // strand only
  std::atomic<uint64_t> queued_bytes_{0};
  std::atomic<std::size_t> queued_messages_{0};
  std::atomic<bool> open_{true};
  bool closing_ = false;            // strand only: graceful close requested
  std::string close_reason_;        // strand only
  bool finished_ = false;           // strand only
  MessageFn on_message_;
  CloseFn on_close_;
};

}  // namespace longhaul::transport
