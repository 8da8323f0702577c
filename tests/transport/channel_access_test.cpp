// What a refused or misconfigured client learns, on its own side: every connection failure is
// classified (connect_failure.h) as permanent (HTTP 403 with the server's reason, server not
// verified by our CA file, name/IP mismatch, our certificate rejected, protocol, wrong path) or
// transient (refused, closed), with a message that names the file or the names involved.
// Also: operator (read-only) identities, the live allow-list, the plain-HTTP GET listener.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "common/error.h"
#include "transport/channel_test_util.h"
#include "transport/https_get.h"

namespace longhaul::transport {
using namespace std::chrono_literals;
namespace net = boost::asio;
namespace http = boost::beast::http;

namespace {

// The ConnectError of a single connection attempt (fails the test if it connects).
ConnectError attempt(ClientOptions o) {
  o.retry_deadline = 0s;
  ChannelClient client(o);
  try {
    client.connect();
  } catch (const ConnectError& e) {
    return e;
  }
  ADD_FAILURE() << "connected although a failure was expected";
  return ConnectError(ConnectFailure::kTransient, "connected");
}

void expect_has(const std::string& text, const std::string& needle) {
  EXPECT_NE(text.find(needle), std::string::npos) << "'" << needle << "' not in: " << text;
}

// A plain-HTTP request over TCP: (status, body).
std::pair<int, std::string> plain_request(uint16_t port, http::verb verb, const std::string& target) {
  net::io_context ioc;
  boost::beast::tcp_stream s(ioc);
  s.expires_after(5s);
  s.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.prepare_payload();
  http::write(s, req);
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  return {static_cast<int>(res.result_int()), res.body()};
}

class Access : public ::testing::Test {
 protected:
  void SetUp() override {
    auto o = test::server_options();
    o.plain_http_bind = "127.0.0.1";
    server_ = std::make_unique<ChannelServer>(o);
    server_->add_route("GET", "/v1/status", [](const HttpRequest& r) {
      return HttpResponse{200, "application/json", "{\"reader\": \"" + r.peer_id + "\"}"};
    });
    server_->add_route("POST", "/v1/kick", [](const HttpRequest&) { return HttpResponse{200, "text/plain", "kicked"}; });
    server_->start();
    base_ = "https://127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override { server_->stop(); }
  ClientOptions client(const TlsFiles& tls) { return test::client_options(server_->port(), tls); }

  std::unique_ptr<ChannelServer> server_;
  std::string base_;
};

}  // namespace

TEST_F(Access, IdentityNotOnTheAllowListGets403WithTheReasonOnBothRoutes) {
  const auto e = attempt(client(test::test_pki().site_x));
  EXPECT_EQ(e.kind(), ConnectFailure::kRefusedIdentity) << e.what();
  EXPECT_TRUE(e.permanent());
  EXPECT_STREQ(e.what(), "the coordinator refused this identity: certificate identity 'site-x' is not on the allow-list");
  const auto r = https_get(base_ + "/v1/status", test::test_pki().site_x, 5s);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, "403 Forbidden: certificate identity 'site-x' is not on the allow-list\n");
}

TEST_F(Access, ServerCertificateFromAnotherCaNamesTheCaFileAndTheX509Reason) {
  TlsFiles tls = test::test_pki().site_a;
  tls.ca_cert = test::test_pki().dir / "other-ca" / "ca.crt";  // trusts the wrong CA
  const auto e = attempt(client(tls));
  EXPECT_EQ(e.kind(), ConnectFailure::kServerNotVerified) << e.what();
  expect_has(e.what(), "does not verify against the CA file '" + tls.ca_cert.string() + "'");
  // The server sends its chain up to its CA, which our CA file does not hold.
  expect_has(e.what(), "self-signed certificate in certificate chain");
  expect_has(e.what(), "issued by 'Longhaul run CA'");
  EXPECT_EQ(std::string(e.what()).find("asio"), std::string::npos) << "no Boost internals in the message";
  expect_has(e.detail(), "TLS handshake");  // the raw error stays available for debug logs
}

TEST_F(Access, NameMismatchSaysWhatWasDialledAndWhatTheCertificateNames) {
  auto o = client(test::test_pki().site_a);
  o.server_name = "coord.example";
  auto e = attempt(o);
  EXPECT_EQ(e.kind(), ConnectFailure::kNameMismatch) << e.what();
  EXPECT_STREQ(e.what(),
               "the coordinator's certificate does not name 'coord.example', the name this site dialled; it names "
               "coordinator, DNS:coordinator, DNS:localhost, IP:127.0.0.1");
  o.server_name = "127.0.0.2";
  e = attempt(o);
  EXPECT_EQ(e.kind(), ConnectFailure::kNameMismatch) << e.what();
  expect_has(e.what(), "does not name '127.0.0.2', the address this site dialled");
}

TEST_F(Access, CertificatesTheServerRejectsArePermanent) {
  for (const auto* tls : {&test::test_pki().foreign, &test::test_pki().expired}) {
    const auto e = attempt(client(*tls));
    EXPECT_EQ(e.kind(), ConnectFailure::kCertificateRejected) << e.what();
    expect_has(e.what(), "the coordinator rejected this process's certificate: ");
  }
  TlsFiles none = test::test_pki().site_a;
  none.cert.clear();
  none.key.clear();
  EXPECT_EQ(attempt(client(none)).kind(), ConnectFailure::kCertificateRejected);
}

TEST_F(Access, WrongPathAndNotATlsServerArePermanent) {
  auto o = client(test::test_pki().site_a);
  o.url = "wss://127.0.0.1:" + std::to_string(server_->port()) + "/v2/ws";
  auto e = attempt(o);
  EXPECT_EQ(e.kind(), ConnectFailure::kWrongPath) << e.what();
  expect_has(e.what(), "no WebSocket endpoint at " + o.url);
  o.url = "wss://127.0.0.1:" + std::to_string(server_->plain_http_port()) + "/v1/ws";  // plain HTTP there
  e = attempt(o);
  EXPECT_EQ(e.kind(), ConnectFailure::kProtocol) << e.what();
  expect_has(e.what(), "no TLS 1.3 session with " + o.url);
}

TEST_F(Access, NothingListeningIsTransientAndRetried) {
  net::io_context ioc;
  net::ip::tcp::acceptor a(ioc, net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const uint16_t closed_port = a.local_endpoint().port();
  a.close();
  auto o = client(test::test_pki().site_a);
  o.url = "wss://127.0.0.1:" + std::to_string(closed_port) + "/v1/ws";
  const auto e = attempt(o);
  EXPECT_EQ(e.kind(), ConnectFailure::kTransient);
  EXPECT_STREQ(e.what(), "TCP connect failed: connection refused (nothing listening there?)");
  // With a retry deadline, transient failures are retried (permanent ones are not: above).
  o.retry_deadline = 1s;
  ChannelClient c(o);
  EXPECT_THROW(c.connect(), ConnectError);
  EXPECT_GE(c.attempts(), 2);
}

TEST_F(Access, AnAttemptIsInterruptedPromptly) {
  // A TCP peer that accepts and never speaks TLS: the attempt would last connect_timeout.
  net::io_context ioc;
  net::ip::tcp::acceptor a(ioc, net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  auto o = client(test::test_pki().site_a);
  o.url = "wss://127.0.0.1:" + std::to_string(a.local_endpoint().port()) + "/v1/ws";
  o.connect_timeout = 120s;
  std::atomic<bool> stop{false};
  o.interrupted = [&] { return stop.load(); };
  std::thread stopper([&] {
    std::this_thread::sleep_for(300ms);
    stop = true;
  });
  const auto t0 = std::chrono::steady_clock::now();
  const auto e = attempt(o);
  const auto took = std::chrono::steady_clock::now() - t0;
  stopper.join();
  EXPECT_STREQ(e.what(), "interrupted");
  EXPECT_LT(took, o.connect_timeout / 4) << "the attempt ran on instead of being interrupted";
}

TEST_F(Access, OperatorsReadEveryRouteButCannotJoinOrWrite) {
  const auto& op = test::test_pki().op;
  const auto r = https_get(base_ + "/v1/status", op, 5s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"reader\": \"ops-alice\"}");
  const auto e = attempt(client(op));
  EXPECT_EQ(e.kind(), ConnectFailure::kRefusedIdentity);
  EXPECT_STREQ(e.what(),
               "the coordinator refused this identity: operator identity 'ops-alice' is read-only: it cannot join rounds");
  // Not on the operator allow-list: nothing at all.
  const auto other = https_get(base_ + "/v1/status", test::test_pki().op_other, 5s);
  EXPECT_EQ(other.status, 403);
  expect_has(other.body, "operator identity 'ops-mallory' is not on the operator allow-list");
  // Sites read too.
  EXPECT_EQ(https_get(base_ + "/v1/status", test::test_pki().site_a, 5s).status, 200);
}

TEST_F(Access, OperatorWritesAreRefusedWithCurl) {
  const auto& op = test::test_pki().op;
  const std::string cmd = "curl -sS -X POST --max-time 10 --cacert " + op.ca_cert.string() + " --cert " +
                          op.cert.string() + " --key " + op.key.string() + " -w '\\n%{http_code}' " + base_ +
                          "/v1/kick 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  pclose(p);
  expect_has(out, "403 Forbidden: operator identity 'ops-alice' is read-only: it cannot join rounds (POST refused)");
  expect_has(out, "\n403");
}

TEST_F(Access, RemovingASiteFromTheAllowListClosesItsConnection) {
  ChannelClient a(client(test::test_pki().site_a)), b(client(test::test_pki().site_b));
  a.connect();
  b.connect();
  for (int i = 0; i < 200 && server_->connection_count() < 2; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(server_->connection_count(), 2u);
  EXPECT_EQ(server_->set_allowed_peers({"site-b"}), 1u);
  for (int i = 0; i < 500 && a.connected(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(a.connected());
  EXPECT_TRUE(b.connected());
  EXPECT_EQ(server_->connection_count(), 1u);
  // It cannot come back, and is told why...
  const auto e = attempt(client(test::test_pki().site_a));
  EXPECT_EQ(e.kind(), ConnectFailure::kRefusedIdentity);
  expect_has(e.what(), "'site-a' is not on the allow-list");
  // ...until it is allowed again.
  EXPECT_EQ(server_->set_allowed_peers({"site-a", "site-b"}), 0u);
  ChannelClient again(client(test::test_pki().site_a));
  again.connect();
  EXPECT_TRUE(again.connected());
}

TEST_F(Access, PlainHttpListenerServesGetRoutesOnly) {
  ASSERT_NE(server_->plain_http_port(), 0);
  auto [status, body] = plain_request(server_->plain_http_port(), http::verb::get, "/v1/status");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body, "{\"reader\": \"\"}");
  std::tie(status, body) = plain_request(server_->plain_http_port(), http::verb::post, "/v1/kick");
  EXPECT_EQ(status, 405);
  expect_has(body, "serves GET routes only");
  EXPECT_EQ(plain_request(server_->plain_http_port(), http::verb::get, "/nope").first, 404);
}

TEST(AccessOptions, PlainHttpListenerRefusesNonLoopbackAddresses) {
  auto o = test::server_options();
  o.plain_http_bind = "0.0.0.0";
  try {
    ChannelServer s(o);
    FAIL() << "accepted a non-loopback plain-HTTP address";
  } catch (const UserError& e) {
    expect_has(e.what(), "must be a loopback IP address");
  }
}

}  // namespace longhaul::transport
