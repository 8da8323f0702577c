// The TCP layer under our TLS streams: a beast::tcp_stream (with its timeouts) whose reads go
// through a read-ahead buffer of kSocketReadBytes. Asio's TLS engine asks for one record
// (<= 17 KiB) per read; without the buffer every record costs a recv syscall (with its ACK and
// socket-backlog work), which on loopback costs more than decrypting the record.
// Reads complete with bytes from the buffer when it holds any (never inline: via post), else
// after one socket read into it. Writes pass straight through. One read and one write may be
// outstanding at a time, as for any Asio stream.
#pragma once

#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <cstddef>
#include <memory>
#include <utility>

namespace longhaul::transport {

inline constexpr std::size_t kSocketReadBytes = 256 * 1024;

class BufferedTcp {
 public:
  using next_layer_type = boost::beast::tcp_stream;
  using lowest_layer_type = boost::beast::tcp_stream::socket_type;  // what asio::ssl::stream asks for
  using executor_type = boost::beast::tcp_stream::executor_type;

  explicit BufferedTcp(boost::beast::tcp_stream tcp)
      : tcp_(std::move(tcp)), buf_(std::make_unique<char[]>(kSocketReadBytes)) {}
  BufferedTcp(BufferedTcp&&) = default;
  BufferedTcp& operator=(BufferedTcp&&) = default;

  executor_type get_executor() noexcept { return tcp_.get_executor(); }
  next_layer_type& next_layer() noexcept { return tcp_; }
  const next_layer_type& next_layer() const noexcept { return tcp_; }
  lowest_layer_type& lowest_layer() noexcept { return tcp_.socket(); }
  const lowest_layer_type& lowest_layer() const noexcept { return tcp_.socket(); }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    namespace net = boost::asio;
    return net::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        [this, buffers, state = 0](auto& self, boost::system::error_code ec = {}, std::size_t n = 0) mutable {
          if (state == 0) {
            if (begin_ == end_ && net::buffer_size(buffers) > 0) {
              state = 1;
              begin_ = end_ = 0;
              tcp_.async_read_some(net::buffer(buf_.get(), kSocketReadBytes), std::move(self));
            } else {
              state = 2;
              net::post(tcp_.get_executor(), std::move(self));
            }
            return;
          }
          if (state == 1) end_ = n;
          const std::size_t copied = net::buffer_copy(buffers, net::buffer(buf_.get() + begin_, end_ - begin_));
          begin_ += copied;
          self.complete(ec, copied);
        },
        token, tcp_);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return tcp_.async_write_some(buffers, std::forward<Token>(token));
  }

 private:
  boost::beast::tcp_stream tcp_;
  std::unique_ptr<char[]> buf_;   // kSocketReadBytes
  std::size_t begin_ = 0, end_ = 0;  // unread bytes: buf_[begin_, end_)
};

// WebSocket teardown (found by ADL): the TCP layer's, after the TLS layer sent close_notify.
template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, BufferedTcp& s, TeardownHandler&& handler) {
  async_teardown(role, s.next_layer(), std::forward<TeardownHandler>(handler));  // tcp_stream's, by ADL
}
inline void teardown(boost::beast::role_type role, BufferedTcp& s, boost::beast::error_code& ec) {
  teardown(role, s.next_layer(), ec);  // tcp_stream's, by ADL
}

}  // namespace longhaul::transport
