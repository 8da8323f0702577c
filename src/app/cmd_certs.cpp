// `longhaul certs init --out DIR` and `longhaul certs issue --ca DIR --name N [--dns H]...
// [--ip A]... [--days D] [--out DIR]`: a private CA for one run and per-process certificates
// (ECDSA P-256, keys mode 0600), through OpenSSL's API (transport/certs.h).
#include <CLI/CLI.hpp>
#include <iostream>

#include "app/commands.h"
#include "common/error.h"
#include "transport/certs.h"

namespace longhaul::app {

namespace {
struct CertsArgs {
  std::string out = "certs/ca";
  int ca_days = 3650;
  std::string ca_dir = "certs/ca";
  std::string name;
  std::vector<std::string> dns, ips;
  int days = 365;
  std::string issue_out;
};
}  // namespace

void register_certs(CLI::App& app, CommandFn& run) {
  static CertsArgs a;
  auto* cmd = app.add_subcommand("certs", "private CA and certificates for a run (ECDSA P-256, mutual TLS)");
  cmd->require_subcommand(1);

  auto* init = cmd->add_subcommand("init", "create a private CA: DIR/ca.crt (give to every process), DIR/ca.key (keep safe)");
  init->add_option("--out", a.out, "CA directory")->capture_default_str();
  init->add_option("--days", a.ca_days, "validity in days")->capture_default_str()->check(CLI::PositiveNumber);
  init->callback([&run] {
    run = [] {
      const auto f = transport::create_ca(a.out, a.ca_days);
      std::cout << "CA certificate: " << f.cert.string() << "\nCA key (mode 0600, keep offline): " << f.key.string()
                << "\n";
      return 0;
    };
  });

  auto* issue = cmd->add_subcommand("issue", "issue NAME.crt/NAME.key (+ ca.crt) for a coordinator or a site");
  issue->add_option("--ca", a.ca_dir, "CA directory (from certs init)")->capture_default_str();
  issue->add_option("--name", a.name, "identity: the site id or 'coordinator' (certificate CN)")->required();
  issue->add_option("--dns", a.dns, "extra DNS name the holder serves (repeatable)");
  issue->add_option("--ip", a.ips, "IP address the holder serves (repeatable)");
  issue->add_option("--days", a.days, "validity in days")->capture_default_str()->check(CLI::PositiveNumber);
  issue->add_option("--out", a.issue_out, "output directory (default: certs/<name>)");
  issue->callback([&run] {
    run = [] {
      const std::string out = a.issue_out.empty() ? "certs/" + a.name : a.issue_out;
      const auto f = transport::issue_cert(a.ca_dir, a.name, a.dns, a.ips, a.days, out);
      std::cout << "certificate: " << f.cert.string() << "\nkey (mode 0600): " << f.key.string()
                << "\nCA certificate: " << f.ca_cert.string() << "\n";
      return 0;
    };
  });
}

}  // namespace longhaul::app
