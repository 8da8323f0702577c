// Every way in that must be refused is refused, with a logged reason the server reports:
// no client certificate, a certificate from another CA, an expired certificate, an identity
// not on the allow-list, a TLS 1.2-only client, an oversize message.
#include <gtest/gtest.h>

#include <cstdlib>
#include <future>
#include <mutex>

#include "transport/channel_test_util.h"

namespace longhaul::transport {
using namespace std::chrono_literals;

namespace {

struct Rejections {
  std::mutex mu;
  std::vector<std::string> reasons;
  void add(const std::string& peer, const std::string& reason) {
    std::lock_guard lock(mu);
    reasons.push_back(peer + ": " + reason);
  }
  // Waits (bounded) for a reason containing `needle`.
  bool saw(const std::string& needle) {
    for (int i = 0; i < 200; ++i) {
      {
        std::lock_guard lock(mu);
        for (const auto& r : reasons)
          if (r.find(needle) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  std::string all() {
    std::lock_guard lock(mu);
    std::string s;
    for (const auto& r : reasons) s += r + "\n";
    return s;
  }
};

class Refusal : public ::testing::Test {
 protected:
  void SetUp() override {
    auto o = test::server_options();
    o.max_message_bytes = 1 << 20;
    server_ = std::make_unique<ChannelServer>(o);
    server_->on_reject([this](const std::string& p, const std::string& r) { rejections_.add(p, r); });
    server_->on_open([this](std::shared_ptr<Connection>) { ++opened_; });
    server_->on_message([this](std::shared_ptr<Connection>, Message) { ++delivered_; });
    server_->on_close([this](std::shared_ptr<Connection>, std::string reason) {
      std::lock_guard lock(mu_);
      close_reasons_.push_back(reason);
    });
    server_->start();
  }
  void TearDown() override { server_->stop(); }

  // Expects a single connection attempt with `tls` to fail.
  void expect_refused(TlsFiles tls, const std::string& server_reason) {
    auto o = test::client_options(server_->port(), tls);
    o.retry_deadline = 0s;
    ChannelClient client(o);
    EXPECT_THROW(client.connect(), ChannelError);
    EXPECT_FALSE(client.connected());
    EXPECT_TRUE(rejections_.saw(server_reason)) << "server reasons:\n" << rejections_.all();
    EXPECT_EQ(opened_.load(), 0);
  }

  std::unique_ptr<ChannelServer> server_;
  Rejections rejections_;
  std::atomic<int> opened_{0}, delivered_{0};
  std::mutex mu_;
  std::vector<std::string> close_reasons_;
};

int run_s_client(uint16_t port, const std::string& version) {
  const auto& p = test::test_pki();
  const std::string cmd = "timeout 20 openssl s_client " + version + " -connect 127.0.0.1:" + std::to_string(port) +
                          " -cert " + p.site_a.cert.string() + " -key " + p.site_a.key.string() + " -CAfile " +
                          p.site_a.ca_cert.string() + " -verify_return_error < /dev/null > /dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_F(Refusal, ClientWithoutCertificate) {
  TlsFiles tls = test::test_pki().site_a;
  tls.cert.clear();
  tls.key.clear();
  expect_refused(tls, "peer did not return a certificate");
}

TEST_F(Refusal, CertificateFromAnotherCa) { expect_refused(test::test_pki().foreign, "certificate verify failed"); }

TEST_F(Refusal, ExpiredCertificate) { expect_refused(test::test_pki().expired, "certificate has expired"); }

TEST_F(Refusal, IdentityNotOnTheAllowList) { expect_refused(test::test_pki().site_x, "'site-x' is not on the allow-list"); }

TEST_F(Refusal, Tls12OnlyClient) {
  // Control: the same openssl client with the same credentials gets in over TLS 1.3...
  EXPECT_EQ(run_s_client(server_->port(), "-tls1_3"), 0);
  // ...and is refused when it offers only TLS 1.2.
  EXPECT_NE(run_s_client(server_->port(), "-tls1_2"), 0);
  EXPECT_TRUE(rejections_.saw("unsupported protocol")) << rejections_.all();
}

TEST_F(Refusal, OversizeMessage) {
  auto o = test::client_options(server_->port(), test::test_pki().site_a);
  ChannelClient client(o);
  client.connect();
  // Within the cap: delivered.
  Message ok{"upload", {}, Bytes(512 << 10)};
  client.send(ok);
  for (int i = 0; i < 500 && delivered_ == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(delivered_.load(), 1);
  // Over the server's 1 MiB cap: refused from its header, before the payload is allocated.
  client.send(Message{"upload", {}, Bytes(2 << 20)});
  for (int i = 0; i < 500 && client.connected(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(delivered_.load(), 1);
  std::lock_guard lock(mu_);
  ASSERT_EQ(close_reasons_.size(), 1u);
  EXPECT_NE(close_reasons_[0].find("refused message"), std::string::npos) << close_reasons_[0];
  EXPECT_NE(close_reasons_[0].find("over the cap"), std::string::npos) << close_reasons_[0];
}

}  // namespace longhaul::transport
