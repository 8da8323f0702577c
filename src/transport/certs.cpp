#include "transport/certs.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <memory>

#include "common/error.h"
#include "common/log.h"

namespace longhaul::transport {
namespace fs = std::filesystem;
namespace {

template <auto Fn>
struct Deleter {
  template <typename T>
  void operator()(T* p) const { Fn(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using CertPtr = std::unique_ptr<X509, Deleter<X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;

[[noreturn]] void fail(const std::string& what) { throw UserError("certs: " + what); }

KeyPtr new_p256_key() {
  KeyPtr k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!k) fail("cannot generate an ECDSA P-256 key");
  return k;
}

// Writes text to path via temp file + fsync + rename; mode applies from creation on.
void write_private(const fs::path& path, const std::string& text, mode_t mode) {
  const fs::path tmp = path.string() + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) fail("cannot create '" + tmp.string() + "'");
  ::fchmod(fd, mode);  // in case the file pre-existed with another mode
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    fail("cannot write '" + path.string() + "'");
  }
}

std::string bio_text(BIO* b) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

void save_key(const fs::path& path, EVP_PKEY* key) {
  BioPtr b(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) fail("cannot encode key");
  write_private(path, bio_text(b.get()), 0600);
}

void save_cert(const fs::path& path, X509* cert) {
  BioPtr b(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(b.get(), cert) != 1) fail("cannot encode certificate");
  write_private(path, bio_text(b.get()), 0644);
}

KeyPtr load_key(const fs::path& path) {
  BioPtr b(BIO_new_file(path.c_str(), "r"));
  if (!b) fail("cannot read key '" + path.string() + "'");
  KeyPtr k(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr));
  if (!k) fail("'" + path.string() + "' is not a PEM private key");
  return k;
}

CertPtr load_cert(const fs::path& path) {
  BioPtr b(BIO_new_file(path.c_str(), "r"));
  if (!b) fail("cannot read certificate '" + path.string() + "'");
  CertPtr c(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
  if (!c) fail("'" + path.string() + "' is not a PEM certificate");
  return c;
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) fail("bad certificate extension '" + value + "'");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate skeleton: random 128-bit serial, subject CN, validity [now-1h, now+days]
// (or entirely in the past when days <= 0: [now+(days-1)d, now+days d]).
CertPtr new_cert(const std::string& cn, EVP_PKEY* key, int days, const std::string& role = "") {
  CertPtr c(X509_new());
  X509_set_version(c.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c.get()));
  BN_free(bn);
  const long day = 86400;
  const long not_before = days > 0 ? -3600 : (days - 1) * day;  // 1 h of clock-skew slack
  X509_gmtime_adj(X509_getm_notBefore(c.get()), not_before);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), static_cast<long>(days) * day);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("Longhaul"), -1, -1, 0);
  if (!role.empty())
    X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(role.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_pubkey(c.get(), key);
  return c;
}

void check_name(const std::string& name) {
  if (name.empty() || name.size() > 64) fail("name '" + name + "' must be 1..64 characters");
  for (char ch : name)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.'))
      fail("name '" + name + "' may only contain letters, digits, '-', '_' and '.'");
}

}  // namespace

IssuedFiles create_ca(const fs::path& dir, int days) {
  if (days < 1) fail("--days must be >= 1 for a CA, got " + std::to_string(days));
  fs::create_directories(dir);
  IssuedFiles out{dir / "ca.crt", dir / "ca.crt", dir / "ca.key"};
  if (fs::exists(out.key)) fail("'" + out.key.string() + "' exists; refusing to overwrite a CA key");
  KeyPtr key = new_p256_key();
  CertPtr cert = new_cert("Longhaul run CA", key.get(), days);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  add_ext(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_ext(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) fail("cannot sign the CA certificate");
  save_key(out.key, key.get());
  save_cert(out.cert, cert.get());
  LH_LOG(Info, "certs") << "created CA " << out.cert << " (key " << out.key << ", mode 0600)";
  return out;
}

IssuedFiles issue_cert(const fs::path& ca_dir, const std::string& name, const std::vector<std::string>& dns_names,
                       const std::vector<std::string>& ips, int days, const fs::path& out_dir,
                       const std::string& role) {
  check_name(name);
  if (role != "site" && role != "coordinator" && role != "operator")
    fail("--role '" + role + "' must be site, coordinator or operator");
  const bool op = role == "operator";
  if (op && (!dns_names.empty() || !ips.empty()))
    fail("an operator certificate is a client identity only: it takes no --dns or --ip");
  KeyPtr ca_key = load_key(ca_dir / "ca.key");
  CertPtr ca_cert = load_cert(ca_dir / "ca.crt");
  std::string san = "DNS:" + name;
  for (const auto& d : dns_names) {
    if (d.empty() || d.find_first_of(", \t") != std::string::npos) fail("bad --dns name '" + d + "'");
    san += ",DNS:" + d;
  }
  for (const auto& ip : ips) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(ip, ec);
    if (ec) fail("--ip '" + ip + "' is not an IPv4/IPv6 address");
    san += ",IP:" + ip;
  }
  KeyPtr key = new_p256_key();
  CertPtr cert = new_cert(name, key.get(), days, role);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  add_ext(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_ext(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature");
  add_ext(cert.get(), ca_cert.get(), NID_ext_key_usage, op ? "clientAuth" : "serverAuth,clientAuth");
  if (!op) add_ext(cert.get(), ca_cert.get(), NID_subject_alt_name, san);
  add_ext(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid:always");
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) fail("cannot sign the certificate for " + name);
  fs::create_directories(out_dir);
  IssuedFiles out{out_dir / "ca.crt", out_dir / (name + ".crt"), out_dir / (name + ".key")};
  save_key(out.key, key.get());
  save_cert(out.cert, cert.get());
  if (fs::absolute(out.ca_cert) != fs::absolute(ca_dir / "ca.crt")) save_cert(out.ca_cert, ca_cert.get());
  LH_LOG(Info, "certs") << "issued " << out.cert << " for " << role << " '" << name << "'"
                        << (op ? std::string() : " SAN " + san) << ", " << days << " days";
  return out;
}

fs::path write_pkcs12(const IssuedFiles& files, const std::string& name, const std::string& password,
                      const fs::path& out) {
  if (password.empty()) fail("a PKCS#12 file needs a non-empty password (browsers ask for it on import)");
  KeyPtr key = load_key(files.key);
  CertPtr cert = load_cert(files.cert);
  CertPtr ca = load_cert(files.ca_cert);
  STACK_OF(X509)* chain = sk_X509_new_null();
  sk_X509_push(chain, ca.get());
  // nid/iter/mac_iter 0 = OpenSSL 3 defaults: AES-256-CBC with PBKDF2, HMAC-SHA256 MAC.
  PKCS12* p12 = PKCS12_create(password.c_str(), name.c_str(), key.get(), cert.get(), chain, 0, 0, 0, 0, 0);
  sk_X509_free(chain);  // does not free ca (still owned by its CertPtr)
  if (p12 == nullptr) fail("cannot build the PKCS#12 bundle for " + name);
  BioPtr b(BIO_new(BIO_s_mem()));
  const bool ok = i2d_PKCS12_bio(b.get(), p12) == 1;
  PKCS12_free(p12);
  if (!ok) fail("cannot encode the PKCS#12 bundle for " + name);
  write_private(out, bio_text(b.get()), 0600);
  LH_LOG(Info, "certs") << "wrote " << out << " (PKCS#12: certificate, key and CA; mode 0600)";
  return out;
}

}  // namespace longhaul::transport
