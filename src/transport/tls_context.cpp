#include "transport/tls_context.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>

#include "common/error.h"

namespace longhaul::transport {
namespace ssl = boost::asio::ssl;

namespace {

// Per-SSL storage of what the client's verify callback saw (freed with the SSL).
void free_failure(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<VerifyFailure*>(ptr); }
int failure_index() {
  static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_failure);
  return idx;
}

std::string name_entry(X509_NAME* name, int nid) {
  char buf[256] = {0};
  if (name != nullptr && X509_NAME_get_text_by_NID(name, nid, buf, sizeof(buf)) > 0) return buf;
  return {};
}

// Records the leaf's names when the chain or the host check fails; never changes the verdict.
int client_verify_callback(int ok, X509_STORE_CTX* st) {
  if (ok) return ok;
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx()));
  X509* leaf = X509_STORE_CTX_get0_cert(st);
  if (ssl == nullptr || leaf == nullptr || SSL_get_ex_data(ssl, failure_index()) != nullptr) return ok;
  auto* f = new VerifyFailure{join_names(certificate_names(leaf)), name_entry(X509_get_issuer_name(leaf), NID_commonName)};
  if (SSL_set_ex_data(ssl, failure_index(), f) != 1) delete f;
  return ok;
}

void require_file(const std::filesystem::path& p, const char* what) {
  if (p.empty() || !std::filesystem::exists(p))
    throw UserError(std::string("TLS ") + what + " file '" + p.string() + "' does not exist");
}

void common_setup(ssl::context& ctx, const TlsFiles& tls, bool need_own_cert) {
  SSL_CTX* c = ctx.native_handle();
  // TLS 1.3 only: no downgrade to 1.2 and its weaker suites / renegotiation.
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  ctx.set_options(ssl::context::no_compression);
  // AES-128-GCM first (the fastest AEAD with AES-NI; the benchmark's ceiling), then the others.
  SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
  require_file(tls.ca_cert, "CA certificate");
  ctx.load_verify_file(tls.ca_cert.string());
  if (need_own_cert || !tls.cert.empty()) {
    require_file(tls.cert, "certificate");
    require_file(tls.key, "private key");
    ctx.use_certificate_chain_file(tls.cert.string());
    ctx.use_private_key_file(tls.key.string(), ssl::context::pem);
    if (SSL_CTX_check_private_key(c) != 1)
      throw UserError("TLS private key '" + tls.key.string() + "' does not match certificate '" +
                      tls.cert.string() + "'");
  }
}

}  // namespace

ssl::context make_server_tls_context(const TlsFiles& tls) {
  ssl::context ctx(ssl::context::tls_server);
  common_setup(ctx, tls, /*need_own_cert=*/true);
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  // No session tickets: we never resume, and a ticket written after the handshake would be a
  // record produced outside any write (TlsStream sends those only with the next write).
  SSL_CTX_set_num_tickets(ctx.native_handle(), 0);
  return ctx;
}

ssl::context make_client_tls_context(const TlsFiles& tls) {
  ssl::context ctx(ssl::context::tls_client);
  common_setup(ctx, tls, /*need_own_cert=*/false);
  SSL_CTX_set_verify(ctx.native_handle(), SSL_VERIFY_PEER, client_verify_callback);
  return ctx;
}

void set_client_peer_name(SSL* ssl, const std::string& server_name) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(server_name, ec);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (!ec) {
    // An IP address: verified against the certificate's IP SANs; no SNI (RFC 6066 §3).
    if (X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str()) != 1)
      throw UserError("cannot verify server address '" + server_name + "'");
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl, server_name.c_str()) != 1)
      throw UserError("cannot verify server name '" + server_name + "'");
    if (SSL_set_tlsext_host_name(ssl, server_name.c_str()) != 1)
      throw UserError("cannot set SNI '" + server_name + "'");
  }
}

std::string peer_identity(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return {};
  char cn[256] = {0};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) > 0) return cn;
  std::string out;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans) && out.empty(); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type == GEN_DNS)
        out.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                   ASN1_STRING_length(gn->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
  }
  return out;
}

std::string peer_role(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  return cert == nullptr ? std::string() : name_entry(X509_get_subject_name(cert), NID_organizationalUnitName);
}

std::vector<std::string> certificate_names(X509* cert) {
  std::vector<std::string> out;
  if (cert == nullptr) return out;
  const std::string cn = name_entry(X509_get_subject_name(cert), NID_commonName);
  if (!cn.empty()) out.push_back(cn);
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans) && out.size() < 32; ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type == GEN_DNS) {
      out.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                                         ASN1_STRING_length(gn->d.dNSName)));
    } else if (gn->type == GEN_IPADD) {
      const int n = ASN1_STRING_length(gn->d.iPAddress);
      const unsigned char* b = ASN1_STRING_get0_data(gn->d.iPAddress);
      std::string ip;
      if (n == 4) {
        ip = boost::asio::ip::address_v4({b[0], b[1], b[2], b[3]}).to_string();
      } else if (n == 16) {
        boost::asio::ip::address_v6::bytes_type bytes;
        std::copy(b, b + 16, bytes.begin());
        ip = boost::asio::ip::address_v6(bytes).to_string();
      }
      if (!ip.empty()) out.push_back("IP:" + ip);
    }
  }
  GENERAL_NAMES_free(sans);
  return out;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

VerifyFailure verify_failure(SSL* ssl) {
  const auto* f = static_cast<const VerifyFailure*>(SSL_get_ex_data(ssl, failure_index()));
  return f ? *f : VerifyFailure{};
}

std::string describe_tls_failure(SSL* ssl, const std::string& error_message) {
  std::string out = error_message;
  if (ssl != nullptr) {
    const long vr = SSL_get_verify_result(ssl);
    if (vr != X509_V_OK) out += std::string(" (") + X509_verify_cert_error_string(vr) + ")";
  }
  return out;
}

}  // namespace longhaul::transport
