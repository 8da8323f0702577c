// A private certificate authority for one Longhaul run, and the certificates it issues to the
// coordinator and each site. ECDSA P-256 keys, SHA-256 signatures, written as PEM through
// OpenSSL's API; private keys are created with mode 0600 (never briefly world-readable).
//
// Files: a CA directory holds ca.crt (give to every process) and ca.key (keep offline);
// issue_cert writes <name>.crt and <name>.key (and a copy of ca.crt) into out_dir.
//
// Roles: every issued certificate carries its role as the subject OU ("site", "coordinator",
// "operator"). The coordinator's server reads it (tls_context.h peer_role): an "operator"
// certificate is a read-only identity (HTTPS routes, never the WebSocket), has extended key
// usage clientAuth only and no DNS/IP names. Certificates without an OU act as sites.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace longhaul::transport {

struct IssuedFiles {
  std::filesystem::path ca_cert, cert, key;
};

// Creates ca.crt / ca.key in dir (created if missing). Refuses to overwrite an existing CA
// key (UserError). days: validity, >= 1.
IssuedFiles create_ca(const std::filesystem::path& dir, int days = 3650);

// Issues a certificate for `name` (CN = name, also a DNS SAN; plus the given DNS names and IP
// addresses as SANs) signed by the CA in ca_dir. days may be <= 0 to produce an already
// expired certificate (for tests of the refusal path). Throws UserError on bad input.
// role: "site" (default), "coordinator" or "operator" (no dns_names/ips allowed).
IssuedFiles issue_cert(const std::filesystem::path& ca_dir, const std::string& name,
                       const std::vector<std::string>& dns_names, const std::vector<std::string>& ips,
                       int days, const std::filesystem::path& out_dir, const std::string& role = "site");

// Bundles the certificate, its key and the CA certificate into a PKCS#12 file for browsers
// (AES-256 / PBKDF2, OpenSSL 3's defaults), mode 0600. password must not be empty.
std::filesystem::path write_pkcs12(const IssuedFiles& files, const std::string& name, const std::string& password,
                                   const std::filesystem::path& out);

}  // namespace longhaul::transport
