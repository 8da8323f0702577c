#include "transport/https_get.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/asio/ssl/context.hpp>

#include "transport/connection.h"
#include "transport/url.h"

namespace longhaul::transport {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

HttpResponse https_get(const std::string& url, const TlsFiles& tls, std::chrono::milliseconds timeout) {
  const Url u = parse_url(url, "https");
  net::io_context ioc;
  auto ctx = make_client_tls_context(tls);
  TlsStream stream(beast::tcp_stream(ioc), ctx);
  auto& tcp_layer = beast::get_lowest_layer(stream);
  HttpResponse out;
  beast::error_code ec;
  std::string step = "resolve";
  tcp::resolver resolver(ioc);
  const auto results = resolver.resolve(u.host, u.port, ec);
  auto fail = [&](const beast::error_code& e) {
    throw ChannelError("GET " + url + ": " + step + " failed: " + describe_tls_failure(stream.native_handle(), e.message()));
  };
  if (ec) fail(ec);
  tcp_layer.expires_after(timeout);  // one budget for the whole exchange
  http::response_parser<http::string_body> parser;
  parser.body_limit(16 << 20);
  beast::flat_buffer buffer;
  http::request<http::empty_body> req{http::verb::get, u.path, 11};
  req.set(http::field::host, u.host);
  req.keep_alive(false);
  step = "connect";
  tcp_layer.async_connect(results, [&](beast::error_code e, const tcp::endpoint&) {
    if (e) return fail(e);
    set_client_peer_name(stream.native_handle(), u.host);
    step = "TLS handshake";
    stream.async_handshake(net::ssl::stream_base::client, [&](beast::error_code e2) {
      if (e2) return fail(e2);
      step = "write";
      http::async_write(stream, req, [&](beast::error_code e3, std::size_t) {
        if (e3) return fail(e3);
        step = "read";
        http::async_read(stream, buffer, parser, [&](beast::error_code e4, std::size_t) {
          if (e4) return fail(e4);
          const auto& res = parser.get();
          out.status = static_cast<int>(res.result_int());
          out.content_type = std::string(res[http::field::content_type]);
          out.body = res.body();
        });
      });
    });
  });
  ioc.run();  // handlers throw through run() on failure
  return out;
}

}  // namespace longhaul::transport
