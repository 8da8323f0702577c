#include "transport/server_session.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "common/log.h"
#include "transport/channel_server_impl.h"

namespace longhaul::transport {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);

namespace {

struct SessionCount {
  explicit SessionCount(std::atomic<std::size_t>& n) : n_(n) { ++n_; }
  ~SessionCount() { --n_; }
  std::atomic<std::size_t>& n_;
};

http::response<http::string_body> text_response(http::status status, unsigned version, std::string body) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  return res;
}

// HTTP 403 carrying the reason in the body and in one header line (a WebSocket client may
// not read the body of a declined upgrade). The connection closes after it.
http::response<http::string_body> refusal(unsigned version, const std::string& reason) {
  std::string line = reason;  // may quote a certificate CN: no control characters in a header
  for (char& ch : line)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  auto res = text_response(http::status::forbidden, version, "403 Forbidden: " + line + "\n");
  res.set(kRefusalHeader, line);
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

HttpRequest to_request(const http::request<http::string_body>& req, const std::string& peer_id) {
  HttpRequest r;
  r.method = std::string(req.method_string());
  r.target = std::string(req.target());
  const auto q = r.target.find('?');
  r.path = r.target.substr(0, q);
  r.query = q == std::string::npos ? "" : r.target.substr(q + 1);
  r.body = req.body();
  r.peer_id = peer_id;
  return r;
}

}  // namespace

net::awaitable<void> serve_session(std::shared_ptr<ChannelServer::Impl> impl, tcp::socket socket, HandshakeSlot slot) {
  SessionCount count(impl->sessions);
  boost::system::error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  const std::string address = ec ? "unknown" : ep.address().to_string() + ":" + std::to_string(ep.port());
  socket.set_option(tcp::no_delay(true), ec);
  TlsStream stream(beast::tcp_stream(std::move(socket)), impl->ssl_ctx);
  auto& tcp_layer = beast::get_lowest_layer(stream);

  tcp_layer.expires_after(impl->options.handshake_timeout);
  auto [hs_ec] = co_await stream.async_handshake(net::ssl::stream_base::server, kTuple);
  if (hs_ec) {
    const std::string why = hs_ec == beast::error::timeout
                                ? "TLS handshake timed out after " + std::to_string(impl->options.handshake_timeout.count()) + " s"
                                : "TLS handshake failed: " + describe_tls_failure(stream.native_handle(), hs_ec.message());
    impl->reject(address, why);
    co_return;
  }
  slot.release();  // authenticated (its certificate chains to the CA): no longer anonymous
  const std::string peer_id = peer_identity(stream.native_handle());
  const std::string role = peer_role(stream.native_handle());
  const std::string peer = "'" + peer_id + "' (" + address + ")";
  if (std::string why; !impl->begin_identity_session(peer_id, &why)) {
    impl->reject(peer, why);
    tcp_layer.expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(kTuple);
    co_return;
  }
  IdentitySlot identity_slot(impl, peer_id);
  // Judged per request: the allow-lists may change while a keep-alive connection is open.
  const bool read_only = role == kOperatorRole;
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kMaxHttpBodyBytes);
    parser.header_limit(kMaxHttpHeaderBytes);
    const auto acc = impl->access(peer_id, role);
    tcp_layer.expires_after(acc.read ? impl->options.idle_timeout : impl->options.handshake_timeout);
    auto [rd_ec, n] = co_await http::async_read(stream, buffer, parser, kTuple);
    if (rd_ec) {
      if (!acc.read)
        impl->reject(peer, acc.reason + " (it sent no request)");
      else if (rd_ec != http::error::end_of_stream && rd_ec != net::ssl::error::stream_truncated)
        impl->reject(peer, "bad HTTP request: " + rd_ec.message());
      break;
    }
    http::request<http::string_body> req = parser.release();
    const bool upgrade = websocket::is_upgrade(req);
    const bool write = req.method() != http::verb::get && req.method() != http::verb::head;
    if (upgrade ? !acc.join : (!acc.read || (read_only && write))) {
      const std::string why = acc.read && !upgrade ? acc.reason + " (" + std::string(req.method_string()) + " refused)"
                                                   : acc.reason;
      impl->reject(peer, why);
      tcp_layer.expires_after(impl->options.handshake_timeout);
      co_await http::async_write(stream, refusal(req.version(), why), kTuple);
      break;
    }
    if (upgrade) {
      if (req.target() != impl->options.ws_path) {
        impl->reject(peer, "WebSocket upgrade on unknown path '" + std::string(req.target()) + "'");
        auto res = text_response(http::status::not_found, req.version(), "no WebSocket endpoint here\n");
        res.keep_alive(false);
        res.prepare_payload();
        co_await http::async_write(stream, res, kTuple);
        break;
      }
      tcp_layer.expires_never();  // the WebSocket's own timeouts take over
      WsStream ws(std::move(stream));
      websocket::permessage_deflate pmd;  // off: payloads are already compressed by our codec
      pmd.client_enable = false;
      pmd.server_enable = false;
      ws.set_option(pmd);
      ws.set_option(websocket::stream_base::timeout{impl->options.handshake_timeout, impl->options.idle_timeout, true});
      ws.read_message_max(impl->options.max_message_bytes);
      auto [acc_ec] = co_await ws.async_accept(req, kTuple);
      if (acc_ec) {
        impl->reject(peer, "WebSocket handshake failed: " + acc_ec.message());
        co_return;
      }
      impl->adopt(std::make_shared<Connection>(std::move(ws), peer_id, address, impl->limits()));
      co_return;
    }
    const HttpResponse out = impl->routes.dispatch(to_request(req, peer_id));
    http::response<http::string_body> res{static_cast<http::status>(out.status), req.version()};
    res.set(http::field::content_type, out.content_type);
    res.keep_alive(req.keep_alive());
    res.body() = out.body;
    res.prepare_payload();
    tcp_layer.expires_after(impl->options.handshake_timeout);
    auto [wr_ec, wn] = co_await http::async_write(stream, res, kTuple);
    if (wr_ec || !req.keep_alive()) break;
  }
  tcp_layer.expires_after(std::chrono::seconds(2));
  co_await stream.async_shutdown(kTuple);
}

net::awaitable<void> serve_plain_session(std::shared_ptr<ChannelServer::Impl> impl, tcp::socket socket) {
  SessionCount count(impl->sessions);
  boost::system::error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  const std::string peer = "plain-HTTP client " + (ec ? std::string("unknown") : ep.address().to_string() + ":" +
                                                                                  std::to_string(ep.port()));
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kMaxHttpBodyBytes);
    parser.header_limit(kMaxHttpHeaderBytes);
    stream.expires_after(impl->options.idle_timeout);
    auto [rd_ec, n] = co_await http::async_read(stream, buffer, parser, kTuple);
    if (rd_ec) {
      if (rd_ec != http::error::end_of_stream && rd_ec != beast::error::timeout) {
        impl->reject(peer, "bad HTTP request: " + rd_ec.message());
        // Said in plain text: a TLS client dialling this port by mistake then reports
        // "wrong version number" instead of a bare closed connection.
        auto res = text_response(http::status::bad_request, 11, "400 Bad Request: plain HTTP only on this port\n");
        res.keep_alive(false);
        res.prepare_payload();
        stream.expires_after(impl->options.handshake_timeout);
        co_await http::async_write(stream, res, kTuple);
      }
      break;
    }
    http::request<http::string_body> req = parser.release();
    http::response<http::string_body> res;
    if (req.method() != http::verb::get || websocket::is_upgrade(req)) {
      // Read-only: no WebSocket, no POST, whatever routes the TLS port may grow.
      res = text_response(http::status::method_not_allowed, req.version(),
                          "405 Method Not Allowed: the plain-HTTP listener serves GET routes only\n");
      res.set(http::field::allow, "GET");
      res.keep_alive(false);
    } else {
      const HttpResponse out = impl->routes.dispatch(to_request(req, ""));
      res = http::response<http::string_body>{static_cast<http::status>(out.status), req.version()};
      res.set(http::field::content_type, out.content_type);
      res.body() = out.body;
      res.keep_alive(req.keep_alive());
    }
    res.prepare_payload();
    stream.expires_after(impl->options.handshake_timeout);
    auto [wr_ec, wn] = co_await http::async_write(stream, res, kTuple);
    if (wr_ec || !res.keep_alive()) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace longhaul::transport
