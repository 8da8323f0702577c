#include "transport/channel_test_util.h"

#include <unistd.h>

#include <fstream>
#include <mutex>

#include "transport/certs.h"

namespace longhaul::test {
namespace fs = std::filesystem;
using transport::TlsFiles;

namespace {
TlsFiles files(const transport::IssuedFiles& f) { return {f.ca_cert, f.cert, f.key}; }

uint64_t status_kb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1));
  return 0;
}
}  // namespace

const TestPki& test_pki() {
  static TestPki pki;
  static std::once_flag once;
  std::call_once(once, [] {
    pki.dir = fs::path(LONGHAUL_BUILD_DIR) / "test_pki" / std::to_string(::getpid());
    fs::remove_all(pki.dir);
    const fs::path ca = pki.dir / "ca", other = pki.dir / "other-ca";
    transport::create_ca(ca, 30);
    transport::create_ca(other, 30);
    pki.server = files(transport::issue_cert(ca, "coordinator", {"localhost"}, {"127.0.0.1"}, 30, pki.dir / "coordinator"));
    pki.site_a = files(transport::issue_cert(ca, "site-a", {}, {}, 30, pki.dir / "site-a"));
    pki.site_b = files(transport::issue_cert(ca, "site-b", {}, {}, 30, pki.dir / "site-b"));
    pki.site_x = files(transport::issue_cert(ca, "site-x", {}, {}, 30, pki.dir / "site-x"));
    pki.expired = files(transport::issue_cert(ca, "site-a", {}, {}, -1, pki.dir / "expired"));
    pki.op = files(transport::issue_cert(ca, "ops-alice", {}, {}, 30, pki.dir / "ops-alice", "operator"));
    pki.op_other = files(transport::issue_cert(ca, "ops-mallory", {}, {}, 30, pki.dir / "ops-mallory", "operator"));
    pki.foreign = files(transport::issue_cert(other, "site-a", {}, {}, 30, pki.dir / "foreign"));
    // The foreign client still trusts the real CA for the server; only its own cert is foreign.
    pki.foreign.ca_cert = ca / "ca.crt";
  });
  return pki;
}

transport::ServerOptions server_options() {
  transport::ServerOptions o;
  o.tls = test_pki().server;
  o.allowed_peers = {"site-a", "site-b"};
  o.allowed_operators = {"ops-alice"};
  o.max_message_bytes = 512ull << 20;
  o.handshake_timeout = std::chrono::seconds(5);
  o.idle_timeout = std::chrono::seconds(30);
  return o;
}

transport::ClientOptions client_options(uint16_t port, const TlsFiles& tls) {
  transport::ClientOptions o;
  o.url = "wss://127.0.0.1:" + std::to_string(port) + "/v1/ws";
  o.tls = tls;
  o.max_message_bytes = 512ull << 20;
  o.connect_timeout = std::chrono::seconds(5);
  o.retry_deadline = std::chrono::seconds(5);
  o.backoff_initial = std::chrono::milliseconds(50);
  o.backoff_max = std::chrono::milliseconds(500);
  return o;
}

uint64_t peak_rss_bytes() { return status_kb("VmHWM") * 1024; }
uint64_t current_rss_bytes() { return status_kb("VmRSS") * 1024; }

void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";  // resets VmHWM to the current RSS (Linux >= 4.0)
}

}  // namespace longhaul::test
