// Why one connection attempt to the coordinator failed, and whether waiting can fix it.
//
// Permanent failures are configuration mistakes that no retry heals (the server refused our
// identity with HTTP 403, its certificate does not verify against our CA file or does not name
// the host we dialled, it rejected our certificate, TLS version, wrong WebSocket path); a site
// stops on them. Transient ones (connection refused, unreachable, timeouts, resets, EOF) are
// retried with backoff. message() is one short user-facing sentence; detail() carries the
// Boost/OpenSSL error text with its source location, for debug logs only.
#pragma once

#include <string>

#include "transport/connection.h"

typedef struct ssl_st SSL;

namespace boost::system {
class error_code;
}

namespace longhaul::transport {

enum class ConnectFailure {
  kTransient,            // refused / unreachable / timeout / reset / EOF: retry
  kRefusedIdentity,      // HTTP 403 from the server: our identity is not admitted (reason from it)
  kServerNotVerified,    // the server's chain does not verify against our CA file
  kNameMismatch,         // the server's certificate does not name the host/IP we dialled
  kCertificateRejected,  // the server refused our certificate (TLS alert: unknown CA, expired, ...)
  kProtocol,             // TLS version, not a TLS server, unexpected HTTP status
  kWrongPath,            // HTTP 404 on the WebSocket path
};

const char* connect_failure_name(ConnectFailure k);  // "transient", "refused-identity", ...
inline bool is_permanent(ConnectFailure k) { return k != ConnectFailure::kTransient; }

class ConnectError : public ChannelError {
 public:
  ConnectError(ConnectFailure kind, const std::string& message, std::string detail = {})
      : ChannelError(message), kind_(kind), detail_(std::move(detail)) {}
  ConnectFailure kind() const { return kind_; }
  bool permanent() const { return is_permanent(kind_); }
  const std::string& detail() const { return detail_; }

 private:
  ConnectFailure kind_;
  std::string detail_;
};

// What the client knows about the attempt when it classifies a failure.
struct ConnectContext {
  std::string url;          // wss://host:port/path as configured
  std::string dialled;      // the name/IP verified against the server's certificate
  std::string ca_file;      // our trust anchor (tls.ca_cert)
  std::string step;         // "connect", "TLS handshake", "WebSocket handshake"
};

// Classifies an error from one step of the attempt. `ssl` (may be null) gives the X.509
// verify result; `server_names` the names the server's certificate carries (captured by
// the verify callback, see tls_context.h), used for name/IP mismatches.
ConnectError classify_connect_error(const boost::system::error_code& ec, SSL* ssl, const ConnectContext& ctx);

// Classifies a refused WebSocket upgrade: the HTTP status and the server's reason (body).
ConnectError classify_upgrade_refusal(int status, const std::string& reason, const ConnectContext& ctx);

}  // namespace longhaul::transport
