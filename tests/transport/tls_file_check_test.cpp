// Start-up checks of TLS files (tls_file_check.h): every problem is found before anything is
// written, and the message names the config file, the key and the path. Also the operator role
// and PKCS#12 export of `certs issue`.
#include <gtest/gtest.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include "common/error.h"
#include "transport/certs.h"
#include "transport/tls_file_check.h"

namespace longhaul::transport {
namespace fs = std::filesystem;

namespace {

class TlsFileCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(LONGHAUL_BUILD_DIR) / "tls_file_check_test" / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    create_ca(dir_ / "ca", 10);
    create_ca(dir_ / "other-ca", 10);
    const auto f = issue_cert(dir_ / "ca", "site-a", {}, {}, 5, dir_ / "certs");
    good_ = {f.ca_cert, f.cert, f.key};
  }
  // The message of check_tls_files(files), "" when it passes.
  std::string problem(const TlsFiles& files) {
    try {
      check_tls_files(files, "site-a.toml");
      return "";
    } catch (const UserError& e) {
      return e.what();
    }
  }
  fs::path write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  fs::path dir_;
  TlsFiles good_;
};

}  // namespace

TEST_F(TlsFileCheck, GoodFilesPass) { EXPECT_EQ(problem(good_), ""); }

TEST_F(TlsFileCheck, MissingFileNamesKeyAndPath) {
  TlsFiles f = good_;
  f.ca_cert = dir_ / "nope" / "ca.crt";
  EXPECT_EQ(problem(f), "site-a.toml: key 'tls.ca_cert' = '" + f.ca_cert.string() + "': does not exist");
  f = good_;
  f.key = dir_;
  EXPECT_EQ(problem(f), "site-a.toml: key 'tls.key' = '" + dir_.string() + "': is not a regular file");
}

TEST_F(TlsFileCheck, NotPem) {
  TlsFiles f = good_;
  f.cert = write("junk.crt", "hello\n");
  EXPECT_EQ(problem(f), "site-a.toml: key 'tls.cert' = '" + f.cert.string() +
                            "': is not a PEM certificate (expected '-----BEGIN CERTIFICATE-----')");
  f = good_;
  f.key = write("junk.key", "hello\n");
  EXPECT_NE(problem(f).find("key 'tls.key' = '" + f.key.string() + "': is not an unencrypted PEM private key"),
            std::string::npos);
}

TEST_F(TlsFileCheck, KeyReadableByOthersIsRefusedLikeSsh) {
  ::chmod(good_.key.c_str(), 0644);
  EXPECT_EQ(problem(good_), "site-a.toml: key 'tls.key' = '" + good_.key.string() +
                                "': is readable or writable by group or others (mode 0644); a private key must be "
                                "0600 or stricter: chmod 600 " + good_.key.string());
  ::chmod(good_.key.c_str(), 0400);
  EXPECT_EQ(problem(good_), "");
}

TEST_F(TlsFileCheck, KeyOfAnotherCertificate) {
  const auto other = issue_cert(dir_ / "ca", "site-b", {}, {}, 5, dir_ / "certs");
  TlsFiles f = good_;
  f.key = other.key;
  EXPECT_EQ(problem(f), "site-a.toml: key 'tls.key' = '" + other.key.string() +
                            "': does not match the certificate in tls.cert '" + good_.cert.string() +
                            "' (a key from another `longhaul certs issue`?)");
}

TEST_F(TlsFileCheck, CertificateOfAnotherCa) {
  TlsFiles f = good_;
  f.ca_cert = dir_ / "other-ca" / "ca.crt";
  const std::string p = problem(f);
  EXPECT_NE(p.find("key 'tls.cert' = '" + good_.cert.string() + "': does not verify against the CA in tls.ca_cert '" +
                   f.ca_cert.string() + "': unable to get local issuer certificate"),
            std::string::npos)
      << p;
}

TEST_F(TlsFileCheck, ExpiredCertificate) {
  const auto old = issue_cert(dir_ / "ca", "site-old", {}, {}, -1, dir_ / "old");
  const std::string p = problem({old.ca_cert, old.cert, old.key});
  EXPECT_NE(p.find("key 'tls.cert' = '" + old.cert.string() + "': expired on "), std::string::npos) << p;
}

TEST_F(TlsFileCheck, LoopbackBindWithACertificateForOtherHosts) {
  const auto c = issue_cert(dir_ / "ca", "coordinator", {"coord.example", "localhost"}, {"10.1.2.3", "127.0.0.1"}, 5,
                            dir_ / "coord", "coordinator");
  EXPECT_EQ(certificate_hosts(c.cert), (std::vector<std::string>{"coord.example", "localhost", "10.1.2.3", "127.0.0.1"}));
  const std::string w = loopback_bind_warning("127.0.0.1", c.cert);
  EXPECT_NE(w.find("coordinator.bind = 127.0.0.1 accepts connections from this machine only, but the certificate '" +
                   c.cert.string() + "' names 'coord.example', '10.1.2.3': sites on other machines cannot connect"),
            std::string::npos)
      << w;
  EXPECT_EQ(loopback_bind_warning("0.0.0.0", c.cert), "");
  EXPECT_EQ(loopback_bind_warning("10.1.2.3", c.cert), "");
  // A loopback-only certificate (the quick start's): nothing to say.
  const auto l = issue_cert(dir_ / "ca", "coordinator", {"localhost"}, {"127.0.0.1"}, 5, dir_ / "local", "coordinator");
  EXPECT_EQ(loopback_bind_warning("127.0.0.1", l.cert), "");
}

TEST_F(TlsFileCheck, OperatorCertificateCarriesItsRoleAndExportsToPkcs12) {
  const auto op = issue_cert(dir_ / "ca", "ops-alice", {}, {}, 5, dir_ / "ops", "operator");
  EXPECT_EQ(problem({op.ca_cert, op.cert, op.key}), "");
  FILE* fp = std::fopen(op.cert.c_str(), "r");
  X509* x = PEM_read_X509(fp, nullptr, nullptr, nullptr);
  std::fclose(fp);
  ASSERT_NE(x, nullptr);
  char ou[64] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationalUnitName, ou, sizeof(ou));
  EXPECT_STREQ(ou, "operator");
  EXPECT_EQ(X509_get_extended_key_usage(x), static_cast<uint32_t>(XKU_SSL_CLIENT));  // never a server
  EXPECT_THROW(issue_cert(dir_ / "ca", "ops-bob", {"x.example"}, {}, 5, dir_ / "ops", "operator"), UserError);
  EXPECT_THROW(issue_cert(dir_ / "ca", "ops-bob", {}, {}, 5, dir_ / "ops", "admin"), UserError);

  const fs::path p12 = write_pkcs12(op, "ops-alice", "s3cret pass", dir_ / "ops" / "ops-alice.p12");
  struct stat st {};
  ::stat(p12.c_str(), &st);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  fp = std::fopen(p12.c_str(), "rb");
  PKCS12* bundle = d2i_PKCS12_fp(fp, nullptr);
  std::fclose(fp);
  ASSERT_NE(bundle, nullptr);
  EXPECT_EQ(PKCS12_verify_mac(bundle, "wrong", -1), 0);
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  STACK_OF(X509)* ca = nullptr;
  ASSERT_EQ(PKCS12_parse(bundle, "s3cret pass", &key, &cert, &ca), 1);
  EXPECT_EQ(X509_cmp(cert, x), 0);
  EXPECT_EQ(X509_check_private_key(cert, key), 1);
  EXPECT_EQ(sk_X509_num(ca), 1);
  EXPECT_THROW(write_pkcs12(op, "ops-alice", "", dir_ / "ops" / "empty.p12"), UserError);
  sk_X509_pop_free(ca, X509_free);
  X509_free(cert);
  EVP_PKEY_free(key);
  PKCS12_free(bundle);
  X509_free(x);
}

}  // namespace longhaul::transport
