// `longhaul certs init --out DIR` and `longhaul certs issue --ca DIR --name N [--role R]
// [--dns H]... [--ip A]... [--days D] [--out DIR] [--p12 [--p12-password-file F | --p12-password P]]`:
// a private CA for one run and per-process certificates (ECDSA P-256, keys mode 0600), through
// OpenSSL's API (transport/certs.h). --role operator issues a read-only identity for people
// (dashboard, status, metrics); --p12 also writes NAME.p12 for import into a browser.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
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
  std::string role = "site";
  bool p12 = false;
  std::string p12_password, p12_password_file;
};

// The PKCS#12 password: --p12-password-file (first line), --p12-password, or the environment
// variable LONGHAUL_P12_PASSWORD, in that order.
std::string p12_password(const CertsArgs& a) {
  if (!a.p12_password_file.empty()) {
    std::ifstream f(a.p12_password_file);
    if (!f) throw UserError("--p12-password-file '" + a.p12_password_file + "' cannot be read");
    std::string line;
    std::getline(f, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) throw UserError("--p12-password-file '" + a.p12_password_file + "': first line is empty");
    return line;
  }
  if (!a.p12_password.empty()) return a.p12_password;
  if (const char* e = std::getenv("LONGHAUL_P12_PASSWORD"); e != nullptr && *e != '\0') return e;
  throw UserError("--p12 needs a password: --p12-password-file FILE, --p12-password PASS or LONGHAUL_P12_PASSWORD");
}
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

  auto* issue = cmd->add_subcommand("issue", "issue NAME.crt/NAME.key (+ ca.crt) for a coordinator, a site or an operator");
  issue->add_option("--ca", a.ca_dir, "CA directory (from certs init)")->capture_default_str();
  issue->add_option("--name", a.name, "identity: the site id, 'coordinator' or an operator's name (certificate CN)")->required();
  auto* role_opt = issue->add_option("--role", a.role,
                    "site: joins rounds; coordinator: serves them (default for --name coordinator); operator: read-only HTTPS (dashboard, status)")
      ->capture_default_str()
      ->check(CLI::IsMember({"site", "coordinator", "operator"}));
  issue->add_flag("--p12", a.p12, "also write NAME.p12 (certificate + key + CA) for a browser");
  issue->add_option("--p12-password-file", a.p12_password_file, "file whose first line is the PKCS#12 password");
  issue->add_option("--p12-password", a.p12_password,
                    "PKCS#12 password (visible in `ps`; prefer --p12-password-file or LONGHAUL_P12_PASSWORD)");
  issue->add_option("--dns", a.dns, "extra DNS name the holder serves (repeatable)");
  issue->add_option("--ip", a.ips, "IP address the holder serves (repeatable)");
  issue->add_option("--days", a.days, "validity in days")->capture_default_str()->check(CLI::PositiveNumber);
  issue->add_option("--out", a.issue_out, "output directory (default: certs/<name>)");
  issue->callback([&run, role_opt] {
    if (role_opt->count() == 0 && a.name == "coordinator") a.role = "coordinator";
    run = [] {
      const std::string out = a.issue_out.empty() ? "certs/" + a.name : a.issue_out;
      const std::string password = a.p12 ? p12_password(a) : "";  // before anything is written
      const auto f = transport::issue_cert(a.ca_dir, a.name, a.dns, a.ips, a.days, out, a.role);
      std::cout << a.role << " certificate: " << f.cert.string() << "\nkey (mode 0600): " << f.key.string()
                << "\nCA certificate: " << f.ca_cert.string() << "\n";
      if (a.p12) {
        const auto p = transport::write_pkcs12(f, a.name, password, std::filesystem::path(out) / (a.name + ".p12"));
        std::cout << "PKCS#12 for a browser (mode 0600): " << p.string() << "\n";
      }
      return 0;
    };
  });
}

}  // namespace longhaul::app
