#include "transport/connect_failure.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>

#include "transport/tls_context.h"

namespace longhaul::transport {
namespace net = boost::asio;

const char* connect_failure_name(ConnectFailure k) {
  switch (k) {
    case ConnectFailure::kTransient: return "transient";
    case ConnectFailure::kRefusedIdentity: return "refused-identity";
    case ConnectFailure::kServerNotVerified: return "server-not-verified";
    case ConnectFailure::kNameMismatch: return "name-mismatch";
    case ConnectFailure::kCertificateRejected: return "certificate-rejected";
    case ConnectFailure::kProtocol: return "protocol";
    case ConnectFailure::kWrongPath: return "wrong-path";
  }
  return "?";
}

namespace {

std::string openssl_reason(int packed) {
  const char* r = ERR_reason_error_string(static_cast<unsigned long>(packed));
  return r ? r : "TLS error " + std::to_string(packed);
}

// Alerts the server sends when it does not accept our certificate.
bool our_certificate_rejected(int reason) {
  switch (reason) {
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

// The peer does not speak our TLS (version, suites) or is not a TLS server at all.
bool protocol_mismatch(int reason) {
  switch (reason) {
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
      return true;
    default:
      return false;
  }
}

std::string transient_reason(const boost::system::error_code& ec) {
  if (ec == net::error::connection_refused) return "connection refused (nothing listening there?)";
  if (ec == boost::beast::error::timeout || ec == net::error::timed_out) return "timed out";
  if (ec == net::error::host_unreachable || ec == net::error::network_unreachable) return "host unreachable";
  if (ec == net::error::host_not_found || ec == net::error::host_not_found_try_again)
    return "cannot resolve the host name";
  if (ec == net::error::connection_reset) return "connection reset by the peer";
  if (ec == net::error::eof || ec == net::ssl::error::stream_truncated)
    return "the coordinator closed the connection";
  return ec.message();
}

}  // namespace

ConnectError classify_connect_error(const boost::system::error_code& ec, SSL* ssl, const ConnectContext& ctx) {
  const std::string detail = ctx.step + " with " + ctx.url + ": " + ec.what();
  if (ec.category() == net::error::get_ssl_category()) {
    const int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      const long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
      const VerifyFailure seen = ssl ? verify_failure(ssl) : VerifyFailure{};
      if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
        return ConnectError(ConnectFailure::kNameMismatch,
                            "the coordinator's certificate does not name '" + ctx.dialled + "', the " +
                                (vr == X509_V_ERR_IP_ADDRESS_MISMATCH ? "address" : "name") +
                                " this site dialled; it names " +
                                (seen.names.empty() ? std::string("nothing usable") : seen.names),
                            detail);
      std::string why = vr != X509_V_OK ? X509_verify_cert_error_string(vr) : openssl_reason(ec.value());
      if (!seen.issuer.empty()) why += "; it was issued by '" + seen.issuer + "'";
      return ConnectError(ConnectFailure::kServerNotVerified,
                          "the coordinator's certificate does not verify against the CA file '" + ctx.ca_file +
                              "': " + why,
                          detail);
    }
    if (our_certificate_rejected(reason))
      return ConnectError(ConnectFailure::kCertificateRejected,
                          "the coordinator rejected this process's certificate: " + openssl_reason(ec.value()),
                          detail);
    if (protocol_mismatch(reason))
      return ConnectError(ConnectFailure::kProtocol,
                          "no TLS 1.3 session with " + ctx.url + ": " + openssl_reason(ec.value()) +
                              " (is a Longhaul coordinator listening there?)",
                          detail);
    return ConnectError(ConnectFailure::kTransient, ctx.step + " failed: " + openssl_reason(ec.value()), detail);
  }
  return ConnectError(ConnectFailure::kTransient, ctx.step + " failed: " + transient_reason(ec), detail);
}

ConnectError classify_upgrade_refusal(int status, const std::string& reason, const ConnectContext& ctx) {
  std::string r = reason;
  while (!r.empty() && (r.back() == '\n' || r.back() == '\r' || r.back() == ' ')) r.pop_back();
  if (r.size() > 300) r = r.substr(0, 300) + "...";  // the server's text is untrusted: bounded
  for (char& ch : r)
    if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
  const std::string said = r.empty() ? "" : ": " + r;
  const std::string detail = "WebSocket upgrade at " + ctx.url + " answered HTTP " + std::to_string(status);
  if (status == 403)
    return ConnectError(ConnectFailure::kRefusedIdentity, "the coordinator refused this identity" + said, detail);
  if (status == 404)
    return ConnectError(ConnectFailure::kWrongPath,
                        "no WebSocket endpoint at " + ctx.url + " (HTTP 404; check the path)" + said, detail);
  if (status >= 500 || status == 429 || status == 408)
    return ConnectError(ConnectFailure::kTransient, "the coordinator answered HTTP " + std::to_string(status) + said,
                        detail);
  return ConnectError(ConnectFailure::kProtocol,
                      "the WebSocket upgrade at " + ctx.url + " was answered HTTP " + std::to_string(status) + said,
                      detail);
}

}  // namespace longhaul::transport
