#include "transport/tls_stream.h"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <cstring>
#include <stdexcept>

namespace longhaul::transport {
namespace tls_detail {
namespace {

// The BIO OpenSSL reads ciphertext from and writes it to: Engine::in and Engine::out. Reads
// of an empty `in` ask OpenSSL to retry (the op then reads the socket); writes always succeed.
int bio_read(BIO* b, char* dst, int len) {
  auto* e = static_cast<Engine*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  const std::size_t have = e->in_end - e->in_begin;
  if (have == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  const std::size_t n = std::min<std::size_t>(have, static_cast<std::size_t>(len));
  std::memcpy(dst, e->in.get() + e->in_begin, n);
  e->in_begin += n;
  return static_cast<int>(n);
}

int bio_write(BIO* b, const char* src, int len) {
  auto* e = static_cast<Engine*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  e->out.insert(e->out.end(), src, src + len);
  return len;
}

long bio_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

BIO_METHOD* bio_method() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "longhaul-tls-buffers");
    BIO_meth_set_read(bm, bio_read);
    BIO_meth_set_write(bm, bio_write);
    BIO_meth_set_ctrl(bm, bio_ctrl);
    return bm;
  }();
  return m;
}

}  // namespace

Engine::Engine(SSL_CTX* ctx) : in(std::make_unique<char[]>(kSocketReadBytes)) {
  ssl = SSL_new(ctx);
  BIO* bio = BIO_new(bio_method());
  if (ssl == nullptr || bio == nullptr) {
    SSL_free(ssl);
    BIO_free(bio);
    throw std::runtime_error("TLS: cannot create an SSL session (out of memory?)");
  }
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl, bio, bio);  // ssl owns bio
  out.reserve(kTlsFlushBytes + 64 * 1024);
  flight.reserve(kTlsFlushBytes + 64 * 1024);
}

Engine::~Engine() { SSL_free(ssl); }

Step classify(Engine& e, int r, boost::system::error_code& ec) {
  if (r == 1) return Step::kDone;
  if (e.deferred_error != 0) {  // the session failed earlier (see Engine::deferred_error)
    ERR_clear_error();
    ec = boost::system::error_code(static_cast<int>(e.deferred_error), boost::asio::error::get_ssl_category());
    return Step::kFailed;
  }
  switch (SSL_get_error(e.ssl, r)) {
    case SSL_ERROR_WANT_READ:
      return Step::kWantRead;
    case SSL_ERROR_ZERO_RETURN:
      return Step::kClosed;
    case SSL_ERROR_SSL:
      ec = boost::system::error_code(static_cast<int>(ERR_get_error()), boost::asio::error::get_ssl_category());
      ERR_clear_error();
      return Step::kFailed;
    default:  // SYSCALL / WANT_WRITE cannot come from our BIO: report, do not loop
      ERR_clear_error();
      ec = boost::asio::ssl::error::unexpected_result;
      return Step::kFailed;
  }
}

}  // namespace tls_detail

TlsStream::TlsStream(boost::beast::tcp_stream tcp, boost::asio::ssl::context& ctx)
    : tcp_(std::move(tcp)), e_(std::make_unique<tls_detail::Engine>(ctx.native_handle())) {}

void teardown(boost::beast::role_type role, TlsStream& s, boost::beast::error_code& ec) {
  // Synchronous teardown is not used by this program (every WebSocket call is asynchronous).
  (void)role;
  (void)s;
  ec = boost::asio::error::operation_not_supported;
}

}  // namespace longhaul::transport
