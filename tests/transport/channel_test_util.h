// Shared fixtures for the channel tests: a throwaway PKI (run CA, coordinator and site
// certificates, plus a foreign CA and an expired certificate) and server/client option helpers.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "transport/channel_client.h"
#include "transport/channel_server.h"

namespace longhaul::test {

struct TestPki {
  std::filesystem::path dir;
  transport::TlsFiles server;    // CN coordinator, IP SAN 127.0.0.1
  transport::TlsFiles site_a;    // CN site-a (allow-listed)
  transport::TlsFiles site_b;    // CN site-b
  transport::TlsFiles site_x;    // CN site-x, NOT on the allow-list
  transport::TlsFiles foreign;   // CN site-a, but signed by another CA
  transport::TlsFiles expired;   // CN site-a, expired yesterday
  transport::TlsFiles op;        // CN ops-alice, role operator (allow-listed as an operator)
  transport::TlsFiles op_other;  // CN ops-mallory, role operator, NOT on the operator allow-list
};

// Created once per test process under the build dir.
const TestPki& test_pki();

transport::ServerOptions server_options();  // 127.0.0.1:0, allow-list {site-a, site-b}, operators {ops-alice}
transport::ClientOptions client_options(uint16_t port, const transport::TlsFiles& tls);

// Peak resident set size of this process in bytes (VmHWM), and a reset of that peak.
uint64_t peak_rss_bytes();
uint64_t current_rss_bytes();
void reset_peak_rss();

}  // namespace longhaul::test
