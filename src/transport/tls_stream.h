// TLS over a beast::tcp_stream, driven by OpenSSL through buffers we own (a custom BIO), in
// place of asio::ssl::stream. Why: Asio's engine moves every record through a 17 KiB BIO pair
// and issues one socket call per record (two extra copies and ~65,000 syscalls per GiB each
// way); here ciphertext is read kSocketReadBytes at a time and written kTlsFlushBytes at a time.
//
// Contract (what Beast's WebSocket and HTTP code needs of a stream, the same as asio::ssl):
// - async_handshake / async_read_some / async_write_some / async_shutdown; at most one read and
//   one write outstanding, all on the tcp_stream's executor (a strand). The tcp_stream's
//   expiry (expires_after) bounds every socket wait.
// - Read errors: net::error::eof after the peer's close_notify; ssl::error::stream_truncated
//   when TCP ends without one (the data may have been cut); TLS failures in Asio's SSL error
//   category (what describe_tls_failure() and ec.message() print).
// - async_shutdown sends close_notify and does not wait for the peer's (RFC 8446 §6.1).
// - Records a read produces (alerts, KeyUpdate replies) leave with the next write or shutdown.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace longhaul::transport {

inline constexpr std::size_t kSocketReadBytes = 256 * 1024;  // ciphertext bytes per socket read
inline constexpr std::size_t kTlsFlushBytes = 256 * 1024;    // plaintext bytes per socket write

namespace tls_detail {

// Everything OpenSSL's BIO points at; heap-held so a TlsStream can move.
struct Engine {
  SSL* ssl = nullptr;
  std::unique_ptr<char[]> in;       // ciphertext read from the socket: in[in_begin, in_end)
  std::size_t in_begin = 0, in_end = 0;
  std::vector<char> out;            // ciphertext OpenSSL wrote, not yet handed to the socket
  std::vector<char> flight;         // ciphertext being written to the socket now
  // A TLS failure (OpenSSL error code) met while decrypting more records after a read already
  // had data to return: the next operation reports it (OpenSSL itself then only says "error").
  unsigned long deferred_error = 0;
  explicit Engine(SSL_CTX* ctx);
  ~Engine();
};

enum class Step { kDone, kWantRead, kClosed, kFailed };
// Classifies the result r of an SSL_* call on e.ssl; sets ec on kFailed.
Step classify(Engine& e, int r, boost::system::error_code& ec);

}  // namespace tls_detail

class TlsStream {
 public:
  using executor_type = boost::beast::tcp_stream::executor_type;
  using next_layer_type = boost::beast::tcp_stream;

  TlsStream(boost::beast::tcp_stream tcp, boost::asio::ssl::context& ctx);
  TlsStream(TlsStream&&) noexcept = default;  // not assignable: beast::tcp_stream is not

  executor_type get_executor() noexcept { return tcp_.get_executor(); }
  next_layer_type& next_layer() noexcept { return tcp_; }
  const next_layer_type& next_layer() const noexcept { return tcp_; }
  SSL* native_handle() noexcept { return e_->ssl; }

  template <class Token>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Token&& token) {
    SSL* ssl = e_->ssl;
    if (type == boost::asio::ssl::stream_base::client) SSL_set_connect_state(ssl);
    else SSL_set_accept_state(ssl);
    return run<void(boost::system::error_code)>(
        [ssl](std::size_t&) { return SSL_do_handshake(ssl); }, /*flush_always=*/true, std::forward<Token>(token));
  }

  template <class Token>
  auto async_shutdown(Token&& token) {
    SSL* ssl = e_->ssl;
    return run<void(boost::system::error_code)>(
        [ssl](std::size_t&) {
          const int r = SSL_shutdown(ssl);
          return r >= 0 ? 1 : r;  // 0 = our close_notify sent, the peer's not awaited
        },
        /*flush_always=*/true, std::forward<Token>(token));
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    boost::asio::mutable_buffer first;
    for (const auto b : boost::beast::buffers_range_ref(buffers))
      if (b.size() > 0) {
        first = b;
        break;
      }
    tls_detail::Engine* e = e_.get();
    return run<void(boost::system::error_code, std::size_t)>(
        [e, first](std::size_t& n) {
          if (first.size() == 0) return 1;
          SSL* ssl = e->ssl;
          const int r = SSL_read_ex(ssl, first.data(), first.size(), &n);
          if (r != 1) return r;
          // Go on decrypting what already arrived (one record per SSL_read), so that one
          // read_some returns up to kSocketReadBytes rather than 16 KiB.
          std::size_t more = 0;
          int rr = 1;
          while (n < first.size() &&
                 (rr = SSL_read_ex(ssl, static_cast<char*>(first.data()) + n, first.size() - n, &more)) == 1)
            n += more;
          // The last call's WANT_READ / close_notify is seen again on the next read; a failure
          // (e.g. a tampered record) is kept for it, as OpenSSL will not say it twice.
          if (rr != 1 && SSL_get_error(ssl, rr) == SSL_ERROR_SSL) e->deferred_error = ERR_peek_error();
          ERR_clear_error();
          return 1;
        },
        /*flush_always=*/false, std::forward<Token>(token));
  }

  // Encrypts up to kTlsFlushBytes of `buffers` and writes the records in one socket write.
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    std::vector<boost::asio::const_buffer> parts;
    std::size_t budget = kTlsFlushBytes;
    for (const auto b : boost::beast::buffers_range_ref(buffers)) {
      if (budget == 0) break;
      if (b.size() == 0) continue;
      parts.emplace_back(b.data(), std::min(b.size(), budget));
      budget -= parts.back().size();
    }
    SSL* ssl = e_->ssl;
    return run<void(boost::system::error_code, std::size_t)>(
        [ssl, parts = std::move(parts), next = std::size_t{0}, total = std::size_t{0}](std::size_t& n) mutable {
          while (next < parts.size()) {
            std::size_t w = 0;
            const int r = SSL_write_ex(ssl, parts[next].data(), parts[next].size(), &w);
            if (r <= 0) return r;  // our BIO never blocks a write: a real failure
            total += w;
            ++next;
          }
          n = total;
          return 1;
        },
        /*flush_always=*/true, std::forward<Token>(token));
  }

 private:
  // Runs `call` (an SSL_* call; 1 = done, setting n for reads/writes) until it completes:
  // feeding it socket bytes when it wants input, and — when flush_always — writing what it
  // produced before completing. Completion: (ec) or (ec, n) per Signature.
  template <class Signature, class Call, class Token>
  auto run(Call call, bool flush_always, Token&& token) {
    namespace net = boost::asio;
    using boost::system::error_code;
    tls_detail::Engine* e = e_.get();
    auto& tcp = tcp_;
    return net::async_compose<Token, Signature>(
        [e, &tcp, call = std::move(call), flush_always, state = 0, n = std::size_t{0}, result = error_code{}](
            auto& self, error_code ec = {}, std::size_t got = 0) mutable {
          auto finish = [&](error_code r) {
            if constexpr (std::is_same_v<Signature, void(error_code)>) self.complete(r);
            else self.complete(r, r ? 0 : n);
          };
          for (;;) {
            switch (state) {
              case 0: {  // call OpenSSL
                const int r = call(n);
                const auto step = tls_detail::classify(*e, r, result);
                if (step == tls_detail::Step::kWantRead) {
                  if (flush_always && !e->out.empty()) {
                    state = 2;  // flush what it wrote (e.g. a handshake flight), then read
                    break;
                  }
                  state = 1;
                  e->in_begin = e->in_end = 0;
                  tcp.async_read_some(net::buffer(e->in.get(), kSocketReadBytes), std::move(self));
                  return;
                }
                if (step == tls_detail::Step::kClosed) result = net::error::eof;
                if (flush_always && !e->out.empty()) {
                  state = 4;  // flush, then complete with `result`
                  break;
                }
                state = 6;  // complete, but never inline
                net::post(tcp.get_executor(), std::move(self));
                return;
              }
              case 1:  // socket read done
                if (ec) {
                  result = ec == net::error::eof ? error_code(net::ssl::error::stream_truncated) : ec;
                  finish(result);
                  return;
                }
                e->in_end = got;
                state = 0;
                break;
              case 2:
              case 4:  // hand the produced records to the socket
                e->flight.swap(e->out);
                state += 1;
                net::async_write(tcp, net::buffer(e->flight), std::move(self));
                return;
              case 3:  // flushed before a read
                e->flight.clear();
                if (ec) {
                  finish(ec);
                  return;
                }
                state = 1;
                e->in_begin = e->in_end = 0;
                tcp.async_read_some(net::buffer(e->in.get(), kSocketReadBytes), std::move(self));
                return;
              case 5:  // flushed (or nothing to flush): done
                e->flight.clear();
                if (ec && !result) result = ec;
                finish(result);
                return;
              case 6:  // posted completion (touches no buffer: a write may be in flight)
                finish(result);
                return;
            }
          }
        },
        token, tcp_);
  }

  boost::beast::tcp_stream tcp_;
  std::unique_ptr<tls_detail::Engine> e_;
};

// WebSocket teardown (found by ADL): close_notify, then the TCP layer's teardown.
template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, TlsStream& s, TeardownHandler&& handler) {
  namespace net = boost::asio;
  net::async_compose<TeardownHandler, void(boost::system::error_code)>(
      [&s, role, state = 0](auto& self, boost::system::error_code ec = {}) mutable {
        if (state == 0) {
          state = 1;
          s.async_shutdown(std::move(self));
          return;
        }
        if (state == 1) {
          state = 2;
          async_teardown(role, s.next_layer(), std::move(self));  // tcp_stream's, by ADL
          return;
        }
        self.complete(ec);
      },
      handler, s.next_layer());
}
void teardown(boost::beast::role_type role, TlsStream& s, boost::beast::error_code& ec);

}  // namespace longhaul::transport
