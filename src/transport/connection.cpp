#include "transport/connection.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_range.hpp>

#include "common/log.h"

namespace longhaul::transport {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using net::use_awaitable;

Connection::Connection(WsStream ws, std::string peer_id, std::string peer_address, ConnectionLimits limits)
    : ws_(std::move(ws)),
      peer_id_(std::move(peer_id)),
      peer_address_(std::move(peer_address)),
      limits_(limits),
      limiter_(limits.rate_limit_bytes_per_s),
      wake_(ws_.get_executor()),
      resume_(ws_.get_executor()) {
  ws_.read_message_max(limits_.max_message_bytes);
  ws_.auto_fragment(false);  // we frame ourselves: one frame per write_some of <= kWriteChunk
  ws_.write_buffer_bytes(64 * 1024);  // client side: masked copy per write (L2-sized; 256 KiB measured slower)
  ws_.binary(true);
  websocket::stream_base::timeout t;
  t.handshake_timeout = limits_.handshake_timeout;
  t.idle_timeout = limits_.idle_timeout;
  t.keep_alive_pings = true;  // a ping after idle_timeout/2 of silence keeps LBs and peers alive
  ws_.set_option(t);
}

Connection::~Connection() = default;

void Connection::start(MessageFn on_message, CloseFn on_close) {
  on_message_ = std::move(on_message);
  on_close_ = std::move(on_close);
  auto self = shared_from_this();
  net::co_spawn(ws_.get_executor(), [self]() { return self->read_loop(); }, net::detached);
  net::co_spawn(ws_.get_executor(), [self]() { return self->write_loop(); }, net::detached);
}

void Connection::send_shared(std::shared_ptr<const Message> m) {
  if (!open_) throw ChannelError("connection to '" + peer_id_ + "' is closed");
  const uint64_t wire = FrameWriter(*m).wire_bytes(outgoing_payload(*m).size());
  if (queued_messages_.load() > 0 &&
      (queued_bytes_.load() + wire > limits_.max_queued_bytes || queued_messages_.load() >= limits_.max_queued_messages))
    throw ChannelError("send queue to '" + peer_id_ + "' is full (" + std::to_string(queued_messages_.load()) +
                       " messages, " + std::to_string(queued_bytes_.load()) + " bytes)");
  queued_bytes_ += wire;
  ++queued_messages_;
  const auto due = std::chrono::steady_clock::now() + limits_.added_latency;
  net::post(ws_.get_executor(), [self = shared_from_this(), m = std::move(m), due, wire]() mutable {
    if (self->finished_ || self->closing_) {
      self->queued_bytes_ -= wire;
      --self->queued_messages_;
      return;
    }
    self->queue_.push_back({std::move(m), due, wire});
    self->wake_.cancel();
  });
}

void Connection::message_handled() {
  net::post(ws_.get_executor(), [self = shared_from_this()] {
    if (self->unhandled_ > 0) --self->unhandled_;
    self->resume_.cancel();
  });
}

void Connection::close(std::string reason) {
  net::post(ws_.get_executor(), [self = shared_from_this(), reason = std::move(reason)] {
    if (self->closing_ || self->finished_) return;
    self->closing_ = true;
    self->close_reason_ = reason;
    self->wake_.cancel();  // the write loop sends the close frame after the message in flight
  });
}

void Connection::abort(std::string reason) {
  net::post(ws_.get_executor(), [self = shared_from_this(), reason = std::move(reason)] {
    beast::error_code ec;
    beast::get_lowest_layer(self->ws_).socket().close(ec);
    self->finish(reason);
  });
}

void Connection::finish(const std::string& reason) {
  if (finished_) return;
  finished_ = true;
  open_ = false;
  wake_.cancel();
  resume_.cancel();
  for (const auto& o : queue_) {
    queued_bytes_ -= o.wire_bytes;
    --queued_messages_;
  }
  if (!queue_.empty()) {
    LH_LOG(Warn, "channel") << "peer '" << peer_id_ << "' (" << peer_address_ << "): dropped " << queue_.size()
                            << " unsent message(s) on close";
  }
  queue_.clear();
  LH_LOG(Info, "channel") << "connection to '" << peer_id_ << "' (" << peer_address_ << ") closed: " << reason;
  if (on_close_) on_close_(shared_from_this(), reason);
  on_message_ = nullptr;
  on_close_ = nullptr;
}

net::awaitable<void> Connection::read_loop() {
  std::string reason;
  try {
    for (;;) {
      // Backpressure: the peer's next message stays in the socket (TCP flow control pushes back
      // on it) until the receiver handled enough of the previous ones.
      while (limits_.max_unhandled_messages > 0 && unhandled_ >= limits_.max_unhandled_messages && !finished_) {
        resume_.expires_at(std::chrono::steady_clock::time_point::max());
        boost::system::error_code ec;
        co_await resume_.async_wait(net::redirect_error(use_awaitable, ec));
      }
      if (finished_) break;
      FrameReader reader(limits_.max_message_bytes, limits_.spool);
      std::chrono::steady_clock::time_point first_bytes{};
      while (!reader.done()) {
        auto buf = reader.next_buffer(kReadChunk);
        const std::size_t n = co_await ws_.async_read_some(net::buffer(buf.data(), buf.size()), use_awaitable);
        if (first_bytes == std::chrono::steady_clock::time_point{}) first_bytes = std::chrono::steady_clock::now();
        reader.consumed(n);
        if (ws_.is_message_done() && !reader.done()) throw WireError("message ended before its declared length");
      }
      if (!ws_.is_message_done()) throw WireError("bytes after the end of a message");
      if (!ws_.got_binary()) throw WireError("text WebSocket message (expected binary)");
      Message m = reader.take();
      m.receive_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - first_bytes).count();
      ++unhandled_;
      if (on_message_) on_message_(shared_from_this(), std::move(m));
    }
  } catch (const WireError& e) {
    reason = std::string("refused message: ") + e.what();
    LH_LOG(Warn, "channel") << "peer '" << peer_id_ << "' (" << peer_address_ << "): " << reason;
    // Policy violation close code; the peer learns why.
    if (!finished_ && !closing_) {
      closing_ = true;
      close_reason_ = reason;
      wake_.cancel();
      co_return;  // the write loop sends the close frame and finishes
    }
  } catch (const boost::system::system_error& e) {
    const auto ec = e.code();
    if (ec == websocket::error::closed) {
      reason = "closed by peer: " + std::string(ws_.reason().reason.c_str());
    } else if (ec == net::ssl::error::stream_truncated) {
      // The peer's TCP stream ended without a TLS close_notify and before any WebSocket close
      // frame: the message stream may have been cut by an attacker or a crash, so this is an
      // error, never a clean end. (After a completed close handshake Beast's teardown already
      // accepts a missing close_notify, since the close frame itself marks the end of data.)
      reason = "connection truncated (no close frame)";
    } else if (ec == beast::error::timeout) {
      reason = "idle timeout (no data or pong for " + std::to_string(limits_.idle_timeout.count()) + " s)";
    } else if (ec == websocket::error::message_too_big || ec == websocket::error::buffer_overflow) {
      reason = "refused message: over read_message_max " + std::to_string(limits_.max_message_bytes);
    } else {
      reason = "read failed: " + ec.message();
    }
    if (ec != websocket::error::closed && ec != net::error::operation_aborted) {
      LH_LOG(Warn, "channel") << "peer '" << peer_id_ << "' (" << peer_address_ << "): " << reason;
    }
  }
  if (closing_ && !close_reason_.empty() && reason.rfind("closed by peer", 0) == 0) reason = close_reason_;
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().close(ignored);
  finish(reason);
}

net::awaitable<void> Connection::write_frame(net::const_buffer buf, bool fin) {
  if (limiter_.enabled()) {
    net::steady_timer t(ws_.get_executor());
    t.expires_at(limiter_.reserve(buf.size()));
    co_await t.async_wait(use_awaitable);
  }
  std::size_t done = 0;
  while (done < buf.size() || (buf.size() == 0 && done == 0)) {
    done += co_await ws_.async_write_some(fin, net::buffer(static_cast<const char*>(buf.data()) + done, buf.size() - done),
                                          use_awaitable);
    if (buf.size() == 0) break;
  }
}

net::awaitable<void> Connection::write_loop() {
  try {
    for (;;) {
      while (queue_.empty() && !closing_ && !finished_) {
        wake_.expires_at(std::chrono::steady_clock::time_point::max());
        boost::system::error_code ec;
        co_await wake_.async_wait(net::redirect_error(use_awaitable, ec));
      }
      if (finished_) co_return;
      if (closing_) break;
      Outgoing& out = queue_.front();
      if (out.due > std::chrono::steady_clock::now()) {  // WAN emulation: one-way latency
        net::steady_timer t(ws_.get_executor());
        t.expires_at(out.due);
        co_await t.async_wait(use_awaitable);
      }
      const Message& m = *out.msg;
      FrameWriter fw(m);
      const std::size_t chunk = limiter_.chunk_size(kWriteChunk);
      co_await write_frame(net::buffer(fw.head()), false);
      const std::span<const std::byte> payload = outgoing_payload(m);
      for (std::size_t off = 0; off < payload.size(); off += chunk) {
        const std::size_t n = std::min(chunk, payload.size() - off);
        fw.update({payload.data() + off, n});
        co_await write_frame(net::buffer(payload.data() + off, n), false);
      }
      const auto trailer = fw.trailer();
      co_await write_frame(net::buffer(trailer.data(), trailer.size()), true);
      queued_bytes_ -= out.wire_bytes;
      --queued_messages_;
      queue_.pop_front();
    }
    // Graceful close: close frame with the reason; Beast then waits (handshake_timeout) for the
    // peer's close frame, which our pending read consumes.
    websocket::close_reason cr(websocket::close_code::normal);
    if (close_reason_.rfind("refused message", 0) == 0) cr.code = websocket::close_code::policy_error;
    cr.reason = close_reason_.substr(0, 120);  // control frame payload limit is 125 bytes
    co_await ws_.async_close(cr, use_awaitable);
    finish(close_reason_);
  } catch (const boost::system::system_error& e) {
    if (!finished_) {
      const std::string reason = closing_ ? close_reason_ : "write failed: " + e.code().message();
      if (!closing_) {
        LH_LOG(Warn, "channel") << "peer '" << peer_id_ << "' (" << peer_address_ << "): " << reason;
      }
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).socket().close(ignored);
      finish(reason);
    }
  }
}

}  // namespace longhaul::transport
