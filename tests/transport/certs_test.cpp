// Certificates: a private CA issues ECDSA P-256 certificates with the requested SANs, keys are
// mode 0600, and bad input is refused with a clear error.
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>

#include "common/error.h"
#include "transport/certs.h"

namespace longhaul::transport {
namespace fs = std::filesystem;

namespace {
fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(LONGHAUL_BUILD_DIR) / "certs_test" / name;
  fs::remove_all(d);
  return d;
}

X509* read_cert(const fs::path& p) {
  FILE* f = std::fopen(p.c_str(), "r");
  X509* c = f ? PEM_read_X509(f, nullptr, nullptr, nullptr) : nullptr;
  if (f) std::fclose(f);
  return c;
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 0777;
}
}  // namespace

TEST(Certs, IssuedCertChainsToCaWithSansAndPrivateKeys) {
  const fs::path d = fresh_dir("ok");
  const auto ca = create_ca(d / "ca", 10);
  EXPECT_EQ(mode_of(ca.key), 0600u);
  const auto site = issue_cert(d / "ca", "coordinator", {"coord.example"}, {"127.0.0.1", "::1"}, 5, d / "out");
  EXPECT_EQ(mode_of(site.key), 0600u);
  EXPECT_TRUE(fs::exists(site.ca_cert));

  X509* ca_cert = read_cert(ca.cert);
  X509* cert = read_cert(site.cert);
  ASSERT_NE(ca_cert, nullptr);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_verify(cert, X509_get0_pubkey(ca_cert)), 1) << "not signed by the CA";
  EXPECT_EQ(EVP_PKEY_get_base_id(X509_get0_pubkey(cert)), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(X509_get0_pubkey(cert)), 256);
  EXPECT_EQ(X509_check_host(cert, "coord.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert, "coordinator", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(cert, "evil.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert, "::1", 0), 1);
  EXPECT_NE(X509_check_ip_asc(cert, "10.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ca(ca_cert), 1);
  EXPECT_EQ(X509_check_ca(cert), 0);
  // Validity: now is inside [notBefore, notAfter].
  EXPECT_LT(X509_cmp_current_time(X509_get0_notBefore(cert)), 0);
  EXPECT_GT(X509_cmp_current_time(X509_get0_notAfter(cert)), 0);
  X509_free(cert);
  X509_free(ca_cert);
}

TEST(Certs, NegativeDaysGiveAnExpiredCertificate) {
  const fs::path d = fresh_dir("expired");
  create_ca(d / "ca", 10);
  const auto site = issue_cert(d / "ca", "site-a", {}, {}, -1, d / "out");
  X509* cert = read_cert(site.cert);
  ASSERT_NE(cert, nullptr);
  EXPECT_LT(X509_cmp_current_time(X509_get0_notAfter(cert)), 0) << "notAfter should be in the past";
  X509_free(cert);
}

TEST(Certs, BadInputIsRefused) {
  const fs::path d = fresh_dir("bad");
  create_ca(d / "ca", 10);
  EXPECT_THROW(create_ca(d / "ca", 10), UserError);  // never overwrite a CA key
  EXPECT_THROW(issue_cert(d / "ca", "site a", {}, {}, 5, d / "out"), UserError);
  EXPECT_THROW(issue_cert(d / "ca", "site-a", {}, {"not-an-ip"}, 5, d / "out"), UserError);
  EXPECT_THROW(issue_cert(d / "missing-ca", "site-a", {}, {}, 5, d / "out"), UserError);
  EXPECT_FALSE(fs::exists(d / "out" / "site-a.key"));
}

}  // namespace longhaul::transport
