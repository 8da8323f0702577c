// `longhaul status --coordinator https://HOST:PORT [--ca F --cert F --key F | --config FILE]
//                  [--watch [--interval S]] [--json] [--timeout S]`
// The run and its sites as a terminal table (kubectl-get-like) from the coordinator's
// /v1/status (and /v1/history for the run's start). Every site-supplied string is printed with
// control characters escaped. Exit 0 when the coordinator answered, 2 when it cannot be asked
// (unreachable, certificate refused, wrong CA, bad arguments); --watch keeps polling through
// transient failures until interrupted.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <cstdio>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "common/config_reader.h"
#include "common/error.h"
#include "transport/https_get.h"

namespace longhaul::app {
namespace {

using json = nlohmann::json;

struct StatusArgs {
  std::string coordinator;  // https://HOST:PORT
  std::string ca, cert, key, config;
  bool watch = false, as_json = false;
  double interval_s = 2, timeout_s = 10;
};

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

// Terminal-safe text: control characters (and DEL) as \xNN.
std::string safe(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int i = 0;
  while (b >= 1024 && i < 5) b /= 1024, ++i;
  char buf[32];
  std::snprintf(buf, sizeof buf, i ? "%.1f %s" : "%.0f %s", b, u[i]);
  return buf;
}

std::string human_duration(double s) {
  if (!(s >= 0) || s > 1e9) return "-";
  long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 86400) std::snprintf(buf, sizeof buf, "%ldd%ldh", t / 86400, t % 86400 / 3600);
  else if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%ldm", t / 3600, t % 3600 / 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

std::string cell(const std::string& key, const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return safe(v.get<std::string>());
  if (v.is_number_integer() && key.find("bytes") != std::string::npos) return human_bytes(v.get<double>());
  if (v.is_number_float()) {
    char b[32];
    std::snprintf(b, sizeof b, "%.4g", v.get<double>());
    return b;
  }
  return safe(v.dump());
}

// Left-aligned columns separated by 3 spaces, like `kubectl get`.
void print_table(std::ostream& o, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 3, ' ');
    }
    o << line << '\n';
  }
}

std::string upper(std::string s) {
  for (auto& c : s) c = c == '_' ? ' ' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Site columns: these first when present, then any other field the coordinator reports.
const std::vector<std::string> kSiteOrder = {
    "state", "last_seen", "round", "last_round_uploaded", "inner_steps", "step_rate", "utilisation",
    "bytes_up", "bytes_down", "uploads_accepted", "uploads_rejected", "resyncs", "protocol_errors",
    "last_refusal"};

void render(std::ostream& o, const json& st, const json* hist) {
  const int64_t round = st.value("round", int64_t{0}), total = st.value("rounds_total", int64_t{0});
  const std::string state = round >= total ? "complete"
                            : st.value("round_open", false) ? "round-open"
                                                            : "waiting";
  const json last = st.value("last_round", json::object());
  double elapsed = -1, eta = -1;
  if (hist && hist->value("started", 0.0) > 0) elapsed = hist->value("now", 0.0) - hist->value("started", 0.0);
  if (last.contains("duration_s") && last["duration_s"].is_number())
    eta = round >= total ? 0 : last["duration_s"].get<double>() * static_cast<double>(total - round);
  std::string loss = last.contains("eval_loss") ? cell("eval_loss", last["eval_loss"]) : "-";
  print_table(o, {{"RUN", "ROUND", "STATE", "ELAPSED", "ETA", "EVAL LOSS", "H", "UP/DOWN", "PARAM HASH"},
                  {safe(st.value("run_id", std::string("?"))),
                   std::to_string(std::min(round, total)) + "/" + std::to_string(total), state,
                   human_duration(elapsed), human_duration(eta), loss,
                   std::to_string(st.value("inner_steps", int64_t{0})),
                   safe(st.value("upload_encoding", std::string("?")) + "/" +
                        st.value("download_encoding", std::string("?"))),
                   safe(st.value("param_hash", std::string("?")))}});
  o << '\n';
  const json sites = st.value("sites", json::object());
  std::set<std::string> keys;
  for (auto& [id, s] : sites.items())
    if (s.is_object())
      for (auto& [k, v] : s.items()) keys.insert(k);
  std::vector<std::string> cols;
  for (const auto& k : kSiteOrder)
    if (keys.count(k)) cols.push_back(k);
  for (const auto& k : keys)
    if (std::find(cols.begin(), cols.end(), k) == cols.end()) cols.push_back(k);
  std::vector<std::vector<std::string>> rows{{"SITE"}};
  for (const auto& k : cols) rows[0].push_back(upper(k));
  for (auto& [id, s] : sites.items()) {
    std::vector<std::string> r{safe(id)};
    for (const auto& k : cols) r.push_back(s.is_object() && s.contains(k) ? cell(k, s[k]) : "-");
    rows.push_back(std::move(r));
  }
  if (sites.empty()) rows.push_back({"(no site has joined yet)"});
  print_table(o, rows);
}

// One line a user can act on, from a failed GET.
std::string explain(const std::string& url, const StatusArgs& a, const std::string& what) {
  auto has = [&](const char* s) { return what.find(s) != std::string::npos; };
  if (has("resolve failed"))
    return "cannot resolve the coordinator's host in " + url + ": " + what;
  if (has("connect failed"))
    return "coordinator " + url + " is unreachable (" + what.substr(what.find("connect failed") + 16) +
           "): is it running, is the address/port right, does a firewall drop it?";
  if (has("TLS handshake failed") && (has("certificate verify failed") || has("unable to get") ||
                                      has("self-signed") || has("self signed")))
    return "the coordinator's certificate does not verify against the CA file " + a.ca +
           " (wrong CA, or the name/IP in the URL is not in its certificate): " + what;
  if (has("TLS handshake failed") || has("read failed") || has("write failed"))
    return "the coordinator refused this client certificate (" + a.cert +
           "): it must be issued by the run's CA and its name allowed by the coordinator (" + what + ")";
  if (has("timed out") || has("timeout"))
    return "coordinator " + url + " did not answer within the timeout: " + what;
  return what;
}

json get_json(const std::string& base, const std::string& path, const StatusArgs& a,
              const transport::TlsFiles& tls) {
  const std::string url = base + path;
  transport::HttpResponse r;
  try {
    r = transport::https_get(url, tls, std::chrono::milliseconds(static_cast<int64_t>(a.timeout_s * 1000)));
  } catch (const std::exception& e) {
    throw UserError(explain(base, a, e.what()));
  }
  if (r.status == 403)
    throw UserError("the coordinator refused this client certificate (" + a.cert + ") for " + path + ": " +
                    safe(r.body.substr(0, 300)));
  if (r.status != 200)
    throw UserError("GET " + url + ": HTTP " + std::to_string(r.status) + ": " + safe(r.body.substr(0, 300)));
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw UserError("GET " + url + ": the answer is not a JSON object");
  return j;
}

int run_status(StatusArgs a) {
  if (!a.config.empty()) {
    ConfigReader r = ConfigReader::from_file(a.config);
    if (a.ca.empty()) a.ca = r.get_path("tls.ca_cert", "certs/ca.crt").string();
    if (a.cert.empty() && r.has("tls.cert")) a.cert = r.get_path("tls.cert", "").string();
    if (a.key.empty() && r.has("tls.key")) a.key = r.get_path("tls.key", "").string();
    if (a.coordinator.empty() && r.has("site.coordinator")) {
      // wss://HOST:PORT/v1/ws -> https://HOST:PORT
      std::string u = r.get_string("site.coordinator", "");
      if (u.rfind("wss://", 0) == 0) u = "https://" + u.substr(6);
      a.coordinator = u.substr(0, u.find('/', 8));
    }
  }
  if (a.coordinator.empty()) throw UserError("--coordinator https://HOST:PORT is required (or a --config with site.coordinator)");
  if (a.coordinator.rfind("https://", 0) != 0)
    throw UserError("--coordinator '" + a.coordinator + "': expected https://HOST:PORT");
  while (!a.coordinator.empty() && a.coordinator.back() == '/') a.coordinator.pop_back();
  if (a.ca.empty() || a.cert.empty() || a.key.empty())
    throw UserError("the coordinator requires a client certificate: give --ca, --cert and --key, or --config FILE with [tls]");
  using Flag = std::pair<const char*, std::string>;
  for (const auto& [flag, p] : {Flag{"--ca", a.ca}, Flag{"--cert", a.cert}, Flag{"--key", a.key}})
    if (!std::filesystem::is_regular_file(p)) throw UserError(std::string(flag) + " " + p + ": no such file");
  const transport::TlsFiles tls{a.ca, a.cert, a.key};
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  for (;;) {
    try {
      json st = get_json(a.coordinator, "/v1/status", a, tls);
      json hist;
      try {  // the run's start; an older coordinator without /v1/history just shows no elapsed time
        hist = get_json(a.coordinator, "/v1/history?since_round=4611686018427387904", a, tls);
      } catch (const UserError&) {
      }
      std::ostringstream out;
      if (a.as_json) {
        out << st.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
      } else {
        if (a.watch) out << "\x1b[H\x1b[2J" << safe(a.coordinator) << "  (every " << a.interval_s << " s, Ctrl-C to stop)\n\n";
        render(out, st, hist.is_object() ? &hist : nullptr);
      }
      std::cout << out.str() << std::flush;
    } catch (const UserError& e) {
      if (!a.watch) throw;
      std::cerr << "longhaul status: " << e.what() << " (retrying)\n";
    }
    if (!a.watch) return 0;
    for (double w = 0; w < a.interval_s && !g_stop.load(); w += 0.1)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (g_stop.load()) return 0;
  }
}

}  // namespace

void register_status(CLI::App& app, CommandFn& run) {
  auto a = std::make_shared<StatusArgs>();
  auto* cmd = app.add_subcommand("status", "Show a running coordinator's run and sites (a table, or --json)");
  cmd->add_option("--coordinator", a->coordinator, "the coordinator's https://HOST:PORT");
  cmd->add_option("--ca", a->ca, "the run's CA certificate (PEM)");
  cmd->add_option("--cert", a->cert, "client certificate (an operator's or a site's)");
  cmd->add_option("--key", a->key, "its private key");
  cmd->add_option("--config", a->config, "take [tls] (and site.coordinator) from this TOML file");
  cmd->add_flag("--watch,-w", a->watch, "refresh until interrupted");
  cmd->add_option("--interval", a->interval_s, "seconds between refreshes with --watch")
      ->capture_default_str()->check(CLI::Range(0.2, 3600.0));
  cmd->add_flag("--json", a->as_json, "print /v1/status as JSON (one line per refresh)");
  cmd->add_option("--timeout", a->timeout_s, "seconds for one request")
      ->capture_default_str()->check(CLI::Range(0.1, 600.0));
  cmd->callback([&run, a] { run = [a] { return run_status(*a); }; });
}

}  // namespace longhaul::app
