// TLS 1.3-only OpenSSL contexts for the channel, and peer identity from certificates.
// Both ends authenticate: the server requires a client certificate that chains to the run's
// CA; the client verifies the server's chain and its host name / IP SAN.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <filesystem>
#include <string>
#include <vector>

typedef struct ssl_st SSL;
typedef struct x509_st X509;

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

// The role a certificate grants, from its subject OU (written by `longhaul certs issue --role`):
// "operator" = read-only HTTP access; anything else (or no OU) = a site or the coordinator.
inline constexpr const char* kOperatorRole = "operator";
std::string peer_role(SSL* ssl);  // the peer certificate's OU, "" when none

// The names a certificate carries, for messages: "CN", then "DNS:x" and "IP:a" SANs, joined
// with ", " by join_names().
std::vector<std::string> certificate_names(X509* cert);
std::string join_names(const std::vector<std::string>& names);

// What the client's verify callback saw of a server certificate that failed verification
// (empty when verification passed or no certificate was seen): its names and its issuer CN.
struct VerifyFailure {
  std::string names;   // "coordinator, DNS:localhost, IP:127.0.0.1"
  std::string issuer;  // issuer CN of the leaf
};
VerifyFailure verify_failure(SSL* ssl);

// Human-readable reason for a failed handshake: the OpenSSL error plus, when the chain was
// rejected, the X509 verify result ("certificate has expired", ...).
std::string describe_tls_failure(SSL* ssl, const std::string& error_message);

}  // namespace longhaul::transport
