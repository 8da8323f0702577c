// TLS 1.3-only OpenSSL contexts for the channel, and peer identity from certificates.
// Both ends authenticate: the server requires a client certificate that chains to the run's
// CA; the client verifies the server's chain and its host name / IP SAN.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <filesystem>
#include <string>

typedef struct ssl_st SSL;

namespace longhaul::transport {

// The three PEM files a process needs: the run's CA certificate (trust anchor), its own
// certificate and its own private key (mode 0600).
struct TlsFiles {
  std::filesystem::path ca_cert, cert, key;
};

// Server: TLS 1.3 only, client certificate required and verified against tls.ca_cert.
boost::asio::ssl::context make_server_tls_context(const TlsFiles& tls);
// Client: TLS 1.3 only, server chain verified against tls.ca_cert; presents tls.cert/key when
// both are set (empty paths = no client certificate, which servers refuse).
boost::asio::ssl::context make_client_tls_context(const TlsFiles& tls);

// Per-connection client setup before the handshake: SNI (for DNS names; RFC 6066 forbids IP
// literals in SNI) and host verification (DNS SAN for names, IP SAN for addresses).
void set_client_peer_name(SSL* ssl, const std::string& server_name);

// The peer's identity: its certificate's subject CN (falls back to the first DNS SAN).
// Empty when the peer presented no certificate.
std::string peer_identity(SSL* ssl);

// Human-readable reason for a failed handshake: the OpenSSL error plus, when the chain was
// rejected, the X509 verify result ("certificate has expired", ...).
std::string describe_tls_failure(SSL* ssl, const std::string& error_message);

}  // namespace longhaul::transport
