// Operating a live run (issue #12): a real coordinator and three real sites on loopback; the
// dashboard's routes over mutual TLS, `promtool check metrics` on its /metrics, and
// `longhaul status` against it — the table, --json, and the errors a user gets for an
// unreachable coordinator, a wrong CA file and a certificate the coordinator refuses.
#include <gtest/gtest.h>

#include <signal.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "outer/cluster_util.h"
#include "test_support.h"
#include "transport/certs.h"
#include "transport/https_get.h"

namespace longhaul::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

struct Ran {
  int status;
  std::string output;
};

// `longhaul <args>` to completion (stdout + stderr).
Ran run_longhaul(const Cluster& c, const std::string& name, std::vector<std::string> args) {
  const fs::path log = c.root() / (name + ".out");
  Process p(std::move(args), log);
  const int st = p.wait(60s);
  return {st, test_support::slurp(log)};
}

TEST(Operations, DashboardMetricsAndStatusAgainstALiveCluster) {
  ClusterOptions o;
  o.rounds = 200;  // stopped by the test once it has seen enough
  o.inner_steps = 2;
  Cluster c("operations", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  auto sites = c.start_sites();
  ASSERT_TRUE(c.wait_for_rounds(2, 300s)) << Cluster::tail(coord.log());

  const std::string base = "https://127.0.0.1:" + std::to_string(c.port());
  const fs::path certs = c.root() / "certs";
  const transport::TlsFiles tls{certs / "ca.crt", certs / "site-a.crt", certs / "site-a.key"};
  auto get = [&](const std::string& path) { return transport::https_get(base + path, tls, 10s); };

  // ---- dashboard: the page, its assets (compiled in) and the history route
  auto page = get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.content_type.find("text/html"), std::string::npos);
  EXPECT_NE(page.body.find("<title>Longhaul</title>"), std::string::npos);
  EXPECT_EQ(page.body.find("http://"), std::string::npos) << "no external resources";
  auto js = get("/dashboard.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_NE(js.content_type.find("javascript"), std::string::npos);
  EXPECT_NE(js.body.find("/v1/history"), std::string::npos);
  EXPECT_EQ(get("/dashboard.css").status, 200);
  auto hist = json::parse(get("/v1/history").body);
  EXPECT_GE(hist["rounds"].size(), 2u);
  EXPECT_EQ(hist["rounds"][0]["round"], 0);
  EXPECT_TRUE(hist["rounds"][0].contains("dp_bytes"));
  EXPECT_TRUE(hist["rounds"][0].contains("time"));
  EXPECT_GT(hist["started"].get<double>(), 1.7e9);
  EXPECT_EQ(hist["policy"]["inner_steps"], 2);
  auto later = json::parse(get("/v1/history?since_round=0").body)["rounds"];
  ASSERT_FALSE(later.empty());
  EXPECT_EQ(later[0]["round"], 1) << "only rounds after since_round";
  auto bad = get("/v1/history?since_round=abc");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("since_round=N"), std::string::npos) << bad.body;

  // ---- /metrics passes promtool's checks and has the per-site and phase metrics
  auto metrics = get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* m : {"longhaul_site_state{site=\"site-a\"", "longhaul_site_uploads_total{site=\"site-b\",verdict=\"accepted\"}",
                        "longhaul_round_phase_seconds_bucket{phase=\"aggregation\"", "phase=\"wait_uploads\"",
                        "process_resident_memory_bytes "})
    EXPECT_NE(metrics.body.find(m), std::string::npos) << m << " missing in\n" << metrics.body;
  {
    std::ofstream f(c.root() / "metrics.txt");
    f << metrics.body;
  }
  const std::string promtool = "promtool check metrics < " + (c.root() / "metrics.txt").string() + " > " +
                               (c.root() / "promtool.out").string() + " 2>&1";
  EXPECT_EQ(std::system(promtool.c_str()), 0)
      << "promtool (Debian's prometheus package, see scripts/bootstrap) says:\n"
      << test_support::slurp(c.root() / "promtool.out");

  // deploy/prometheus.yml is a valid config once its certificate paths exist.
  {
    std::string yml = test_support::slurp(fs::path(LONGHAUL_SOURCE_DIR) / "deploy" / "prometheus.yml");
    ASSERT_FALSE(yml.empty());
    using Swap = std::pair<std::string, fs::path>;
    for (const auto& [from, to] : {Swap{"/etc/prometheus/longhaul/ca.crt", tls.ca_cert},
                                   Swap{"/etc/prometheus/longhaul/prometheus.crt", tls.cert},
                                   Swap{"/etc/prometheus/longhaul/prometheus.key", tls.key}}) {
      ASSERT_NE(yml.find(from), std::string::npos) << from;
      yml.replace(yml.find(from), from.size(), to.string());
    }
    std::ofstream(c.root() / "prometheus.yml") << yml;
    const std::string check = "promtool check config " + (c.root() / "prometheus.yml").string() + " > " +
                              (c.root() / "promtool_config.out").string() + " 2>&1";
    EXPECT_EQ(std::system(check.c_str()), 0) << test_support::slurp(c.root() / "promtool_config.out");
  }

  // ---- longhaul status: the table, --json, --config
  const std::vector<std::string> creds = {"--ca", tls.ca_cert.string(), "--cert", tls.cert.string(), "--key", tls.key.string()};
  auto with = [&](std::vector<std::string> a, const std::vector<std::string>& more) {
    a.insert(a.end(), more.begin(), more.end());
    return a;
  };
  Ran table = run_longhaul(c, "status_table", with({"status", "--coordinator", base}, creds));
  EXPECT_EQ(table.status, 0) << table.output;
  for (const char* s : {"RUN", "ROUND", "SITE", "STATE", "BYTES UP", "site-a", "site-b", "site-c", "/200"})
    EXPECT_NE(table.output.find(s), std::string::npos) << s << " missing in\n" << table.output;
  Ran js_out = run_longhaul(c, "status_json", with({"status", "--json", "--coordinator", base}, creds));
  ASSERT_EQ(js_out.status, 0) << js_out.output;
  json st = json::parse(js_out.output);
  EXPECT_EQ(st["sites"].size(), 3u);
  Ran by_config = run_longhaul(c, "status_config", {"status", "--config", (c.root() / "site-b.toml").string(),
                                                    "--coordinator", base});
  EXPECT_EQ(by_config.status, 0) << by_config.output;
  EXPECT_NE(by_config.output.find("site-c"), std::string::npos) << by_config.output;

  // ---- the errors a user gets
  const int dead_port = test_support::free_port();
  Ran unreachable = run_longhaul(c, "status_unreachable",
                                 with({"status", "--coordinator", "https://127.0.0.1:" + std::to_string(dead_port)}, creds));
  EXPECT_EQ(unreachable.status, 2) << unreachable.output;
  EXPECT_NE(unreachable.output.find("is unreachable"), std::string::npos) << unreachable.output;

  transport::create_ca(c.root() / "other-ca");
  transport::issue_cert(c.root() / "other-ca", "site-a", {}, {}, 30, c.root() / "other");
  Ran wrong_ca = run_longhaul(c, "status_wrong_ca",
                              {"status", "--coordinator", base, "--ca", (c.root() / "other-ca" / "ca.crt").string(),
                               "--cert", tls.cert.string(), "--key", tls.key.string()});
  EXPECT_EQ(wrong_ca.status, 2) << wrong_ca.output;
  EXPECT_NE(wrong_ca.output.find("does not verify against the CA file"), std::string::npos) << wrong_ca.output;

  Ran refused = run_longhaul(c, "status_refused",
                             {"status", "--coordinator", base, "--ca", tls.ca_cert.string(), "--cert",
                              (c.root() / "other" / "site-a.crt").string(), "--key",
                              (c.root() / "other" / "site-a.key").string()});
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_NE(refused.output.find("refused this client certificate"), std::string::npos) << refused.output;

  Ran missing = run_longhaul(c, "status_missing", {"status", "--coordinator", base});
  EXPECT_EQ(missing.status, 2) << missing.output;
  EXPECT_NE(missing.output.find("--ca, --cert and --key"), std::string::npos) << missing.output;

  coord.signal(SIGTERM);
  EXPECT_EQ(coord.wait(60s), 0) << Cluster::tail(coord.log());
}

}  // namespace
}  // namespace longhaul::testing
