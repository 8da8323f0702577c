#include "transport/tls_file_check.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/stat.h>

#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "common/error.h"

namespace longhaul::transport {
namespace fs = std::filesystem;
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* s) const { X509_STORE_CTX_free(s); }
};

// One file under check: where it came from, for messages.
struct Item {
  const fs::path& config;
  const char* key;  // "tls.cert"
  const fs::path& path;
  [[noreturn]] void fail(const std::string& problem) const {
    throw UserError(config.string() + ": key '" + key + "' = '" + path.string() + "': " + problem);
  }
};

// Present, a regular file, readable by this user; returns the open file.
FilePtr open_checked(const Item& it) {
  if (it.path.empty()) it.fail("is empty: the path of a PEM file is required");
  struct stat st {};
  if (::stat(it.path.c_str(), &st) != 0)
    it.fail(errno == ENOENT ? "does not exist" : std::string("cannot be inspected: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) it.fail("is not a regular file");
  FilePtr f(std::fopen(it.path.c_str(), "r"));
  if (!f) it.fail(std::string("cannot be read by this user: ") + std::strerror(errno));
  return f;
}

std::unique_ptr<X509, X509Free> read_cert(const Item& it) {
  FilePtr f = open_checked(it);
  std::unique_ptr<X509, X509Free> c(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!c) it.fail("is not a PEM certificate (expected '-----BEGIN CERTIFICATE-----')");
  return c;
}

std::string asn1_time(const ASN1_TIME* t) {
  BIO* b = BIO_new(BIO_s_mem());
  ASN1_TIME_print(b, t);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  std::string s(data, static_cast<std::size_t>(n));
  BIO_free(b);
  return s;
}

bool is_loopback_name(const std::string& host) {
  if (host == "localhost" || host.ends_with(".localhost")) return true;
  boost::system::error_code ec;
  const auto a = boost::asio::ip::make_address(host, ec);
  return !ec && a.is_loopback();
}

}  // namespace

void check_tls_files(const TlsFiles& files, const fs::path& config) {
  const Item ca{config, "tls.ca_cert", files.ca_cert}, cert{config, "tls.cert", files.cert},
      key{config, "tls.key", files.key};
  auto ca_cert = read_cert(ca);
  auto own = read_cert(cert);

  FilePtr kf = open_checked(key);
  struct stat st {};
  ::fstat(fileno(kf.get()), &st);
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    key.fail(std::string("is readable or writable by group or others (mode ") + mode +
             "); a private key must be 0600 or stricter: chmod 600 " + files.key.string());
  }
  std::unique_ptr<EVP_PKEY, KeyFree> pkey(PEM_read_PrivateKey(kf.get(), nullptr, nullptr, const_cast<char*>("")));
  if (!pkey) key.fail("is not an unencrypted PEM private key (expected '-----BEGIN PRIVATE KEY-----')");
  if (X509_check_private_key(own.get(), pkey.get()) != 1)
    key.fail("does not match the certificate in tls.cert '" + files.cert.string() +
             "' (a key from another `longhaul certs issue`?)");

  if (X509_cmp_current_time(X509_get0_notAfter(own.get())) < 0)
    cert.fail("expired on " + asn1_time(X509_get0_notAfter(own.get())) + "; issue a new one with `longhaul certs issue`");
  if (X509_cmp_current_time(X509_get0_notBefore(own.get())) > 0)
    cert.fail("is not valid before " + asn1_time(X509_get0_notBefore(own.get())) + " (is this machine's clock right?)");

  // The certificate must chain to the CA file (a certificate of another run's CA is refused by
  // the other end with only "unknown ca"; here we can say which files disagree).
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  if (X509_STORE_load_file(store.get(), files.ca_cert.c_str()) != 1)
    ca.fail("cannot be loaded as a CA bundle");
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> vctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(vctx.get(), store.get(), own.get(), nullptr);
  if (X509_verify_cert(vctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(vctx.get());
    cert.fail(std::string("does not verify against the CA in tls.ca_cert '") + files.ca_cert.string() +
              "': " + X509_verify_cert_error_string(err) + " (certificate and CA from different runs?)");
  }
  (void)ca_cert;
}

std::vector<std::string> certificate_hosts(const fs::path& path) {
  std::vector<std::string> out;
  FilePtr f(std::fopen(path.c_str(), "r"));
  if (!f) return out;
  std::unique_ptr<X509, X509Free> c(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  const auto names = certificate_names(c.get());  // CN first, then the SANs
  for (std::size_t i = 1; i < names.size(); ++i) {
    const auto& n = names[i];
    // `certs issue` adds the identity itself as a DNS SAN: not a host anyone was told to dial.
    if (n == "DNS:" + names[0]) continue;
    if (n.rfind("DNS:", 0) == 0 || n.rfind("IP:", 0) == 0) out.push_back(n.substr(n.find(':') + 1));
  }
  return out;
}

std::string loopback_bind_warning(const std::string& bind, const fs::path& cert) {
  if (!is_loopback_name(bind)) return {};
  std::string others;
  for (const auto& h : certificate_hosts(cert))
    if (!is_loopback_name(h)) others += (others.empty() ? "'" : ", '") + h + "'";
  if (others.empty()) return {};
  return "coordinator.bind = " + bind + " accepts connections from this machine only, but the certificate '" +
         cert.string() + "' names " + others +
         ": sites on other machines cannot connect. Set coordinator.bind to the address they dial "
         "(or 0.0.0.0 for all interfaces).";
}

}  // namespace longhaul::transport
