// A site's one outbound connection to the coordinator: wss://host:port/path with mutual TLS.
// connect() retries transient failures with exponential backoff and jitter until its deadline
// and throws ConnectError (connect_failure.h) at once on a permanent one; send_reliable()
// delivers a message exactly once across reconnects (see ChannelServer). Received messages
// wait in a capped inbox for receive(). WAN emulation (a testing aid): sends are paced and
// delayed on the connection (rate_limit_bytes_per_s, added_latency), received messages are held
// back by a ReceivePacer (receive_*) before they reach the inbox. Methods are thread-safe.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "transport/connect_failure.h"
#include "transport/connection.h"
#include "transport/receive_pacer.h"
#include "transport/tls_context.h"

namespace longhaul::transport {

struct ClientOptions {
  std::string url;                                  // wss://host:port/path
  TlsFiles tls;                                     // CA that signed the server; own cert + key
  std::string server_name;                          // name/IP to verify (and SNI); default: url host
  uint64_t max_message_bytes = 1ull << 30;          // per received wire message, bytes
  uint64_t max_queued_bytes = 2ull << 30;           // send queue cap, bytes
  uint64_t max_inbox_bytes = 2ull << 30;            // received, not yet receive()d; over => disconnect
  std::chrono::seconds connect_timeout{10};         // one attempt: TCP + TLS + WebSocket handshake
  std::chrono::seconds retry_deadline{60};          // connect() gives up after this long
  std::chrono::seconds idle_timeout{60};            // silent this long => dropped; pings at half
  std::chrono::milliseconds backoff_initial{200};   // first retry delay (before jitter)
  std::chrono::milliseconds backoff_max{10000};     // retry delay cap
  uint64_t rate_limit_bytes_per_s = 0;              // WAN emulation: send pacing, 0 = off
  std::chrono::milliseconds added_latency{0};       // WAN emulation: one-way latency per message
  // WAN emulation, receive side (receive_pacer.h): every message from the server (acks too)
  // reaches receive() / send_reliable() as if it came down a link of this rate and one-way
  // latency, and so does the news that the connection closed (connected() stays true until
  // then). Arrived, undelivered messages count against max_inbox_bytes. 0 = off.
  uint64_t receive_rate_limit_bytes_per_s = 0;      // bytes/s of wire bytes, 0 = off
  std::chrono::milliseconds receive_added_latency{0};  // one-way, 0 = off
  // Polled every 50 ms while connect() waits (an attempt or a backoff); true = give up at once
  // with ConnectError "interrupted" (a site's SIGTERM). Empty = never.
  std::function<bool()> interrupted;
};

class ChannelClient {
 public:
  explicit ChannelClient(ClientOptions options);  // validates the URL and loads TLS files
  ~ChannelClient();
  ChannelClient(const ChannelClient&) = delete;
  ChannelClient& operator=(const ChannelClient&) = delete;

  // Connects (no-op when a connection is open), retrying transient failures with backoff; throws
  // ConnectError naming the failure: at once when it is permanent (is_permanent(kind)), else
  // once retry_deadline has passed, or when options.interrupted() turns true.
  void connect();
  // Queues m on the current connection; throws ChannelError when not connected / queue full.
  void send(Message m);
  // The same for a message the caller keeps (e.g. to re-send it): queued without a copy.
  void send_shared(std::shared_ptr<const Message> m);
  // The next received message, or nullopt after timeout (or when disconnected and empty).
  std::optional<Message> receive(std::chrono::milliseconds timeout);
  // Exactly-once: m.header["idempotency_key"] must be a non-empty string. Sends, waits for the
  // server's ack, reconnects and resends if the connection drops; throws ChannelError on timeout.
  void send_reliable(Message m, std::chrono::milliseconds timeout);
  void close();
  // An open connection (under receive emulation: or one whose close has not yet come down the
  // emulated link).
  bool connected() const;
  // Connection attempts made so far (for tests and logs).
  int attempts() const { return attempts_.load(); }

 private:
  // One attempt (TCP + TLS + WebSocket within connect_timeout); throws ConnectError.
  std::shared_ptr<Connection> connect_once();
  std::shared_ptr<Connection> current() const;
  // A message from the connection's strand: cap check, then delivered now or put on the link.
  void on_arrival(Message m);
  void on_connection_closed(const std::shared_ptr<Connection>& c);
  void deliver_locked(Message m);  // under mu_: an ack to acked_, anything else to inbox_
  void deliver_due();              // on the link timer's strand: delivers what is due, re-arms
  // The connection is (for the caller) still up: open, or its close still on the emulated link.
  bool link_up_locked(const std::shared_ptr<Connection>& c) const;

  ClientOptions options_;
  std::string host_, port_, path_;
  boost::asio::io_context ioc_;
  std::unique_ptr<boost::asio::ssl::context> ssl_ctx_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::atomic<int> attempts_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<Connection> conn_;   // current connection (may be closed)
  std::deque<Message> inbox_;
  uint64_t inbox_bytes_ = 0;
  std::set<std::string> acked_;        // acks received for keys being waited on
  std::set<std::string> waiting_;      // keys send_reliable is waiting on
  bool closed_ = false;

  // Receive-side WAN emulation (all under mu_ except the timer, which lives on its strand).
  struct OnLink {
    ReceivePacer::Clock::time_point due;
    std::optional<Message> message;      // a message, or (nullopt) the close of `closed`
    std::shared_ptr<Connection> closed;
  };
  ReceivePacer pacer_;
  std::deque<OnLink> link_;                      // arrived, not yet delivered; due ascending
  std::shared_ptr<Connection> close_on_link_;    // closed, but the news is still on the link
  boost::asio::steady_timer link_timer_;         // runs on its own strand of ioc_
  bool link_timer_armed_ = false;                // link timer's strand only
};

}  // namespace longhaul::transport
