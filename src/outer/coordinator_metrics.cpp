#include "outer/coordinator_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

namespace longhaul::outer {
namespace {

std::string label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// Shortest text that reads back as v; +Inf/-Inf/NaN as the format spells them.
std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, p);
}

// A metric-name fragment from a status field name: [a-zA-Z0-9_] kept, anything else '_'.
std::string name_part(const std::string& s) {
  std::string out;
  for (const char c : s) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  // Status fields abbreviate seconds ("compute_s", "last_seen_s_ago"); metric names spell the
  // unit out (Prometheus naming, checked by promtool).
  std::string spelled;
  for (size_t i = 0; i < out.size(); ++i) {
    const bool unit_s = out[i] == 's' && i > 0 && out[i - 1] == '_' && (i + 1 == out.size() || out[i + 1] == '_');
    spelled += unit_s ? std::string("seconds") : std::string(1, out[i]);
  }
  return spelled;
}

void head(std::ostream& o, const std::string& name, const char* help, const char* type) {
  o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

const char* const kStates[] = {"disconnected", "joined", "training", "uploaded"};
// Per-site status fields rendered by dedicated metrics (not as generic gauges).
const std::set<std::string> kDedicated = {"state", "bytes_up", "bytes_down", "uploads_accepted",
                                          "uploads_rejected", "resyncs", "protocol_errors"};

}  // namespace

Histogram Histogram::seconds() {
  Histogram h;
  h.bounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 150, 300, 600, 1800, 7200};
  h.counts.assign(h.bounds.size() + 1, 0);
  return h;
}

void Histogram::observe(double v) {
  if (counts.size() != bounds.size() + 1) counts.assign(bounds.size() + 1, 0);
  size_t i = 0;
  while (i < bounds.size() && v > bounds[i]) ++i;
  ++counts[i];
  sum += v;
  ++count;
}

void RoundPhaseTimer::start(Clock::time_point round_opened) {
  last_ = Clock::now();
  pending_.clear();
  pending_["wait_uploads"] = std::chrono::duration<double>(last_ - round_opened).count();
}

void RoundPhaseTimer::lap(const std::string& phase) {
  const auto now = Clock::now();
  pending_[phase] += std::chrono::duration<double>(now - last_).count();
  last_ = now;
}

void RoundPhaseTimer::finish() {
  for (const auto& [phase, s] : pending_) {
    auto it = hist_.find(phase);
    if (it == hist_.end()) it = hist_.emplace(phase, Histogram::seconds()).first;
    it->second.observe(s);
  }
  pending_.clear();
}

std::string render_prometheus(const CoordinatorMetrics& m) {
  std::ostringstream o;
  head(o, "longhaul_rounds_total", "Outer rounds applied.", "counter");
  o << "longhaul_rounds_total " << m.rounds_total << '\n';
  head(o, "longhaul_rounds_planned", "Outer rounds the run is configured for (coordinator.rounds).", "gauge");
  o << "longhaul_rounds_planned " << m.rounds_planned << '\n';
  head(o, "longhaul_round_open", "1 while a round is in progress.", "gauge");
  o << "longhaul_round_open " << (m.round_open ? 1 : 0) << '\n';
  head(o, "longhaul_round_duration_seconds", "Duration of the last round.", "gauge");
  o << "longhaul_round_duration_seconds " << num(m.last_round_duration_s) << '\n';
  head(o, "longhaul_sites_connected", "Sites joined now.", "gauge");
  o << "longhaul_sites_connected " << m.sites_connected << '\n';
  head(o, "longhaul_rejected_uploads_total", "Uploads refused.", "counter");
  o << "longhaul_rejected_uploads_total " << m.rejected_uploads_total << '\n';
  head(o, "longhaul_hash_resyncs_total", "Full resyncs the sites asked for.", "counter");
  o << "longhaul_hash_resyncs_total " << m.hash_resyncs_total << '\n';
  if (!m.protocol_errors.empty()) {
    head(o, "longhaul_protocol_errors_total", "Connections closed for a protocol violation, by site and reason.",
         "counter");
    for (const auto& e : m.protocol_errors)
      o << "longhaul_protocol_errors_total{site=\"" << label_value(e.site) << "\",reason=\"" << label_value(e.reason)
        << "\"} " << e.count << '\n';
  }
  if (m.eval_loss) {
    head(o, "longhaul_eval_loss", "Held-out loss of θ (nats/token).", "gauge");
    o << "longhaul_eval_loss " << num(*m.eval_loss) << '\n';
  }

  // ---- per site
  head(o, "longhaul_bytes_received_total", "Upload payload bytes per site.", "counter");
  for (const auto& [id, s] : m.sites)
    o << "longhaul_bytes_received_total{site=\"" << label_value(id) << "\"} " << s.bytes_received << '\n';
  head(o, "longhaul_bytes_sent_total", "Download payload bytes per site.", "counter");
  for (const auto& [id, s] : m.sites)
    o << "longhaul_bytes_sent_total{site=\"" << label_value(id) << "\"} " << s.bytes_sent << '\n';
  head(o, "longhaul_site_state", "1 for the state the site is in, 0 for the others.", "gauge");
  for (const auto& [id, s] : m.sites) {
    if (s.state.empty()) continue;
    for (const char* st : kStates)
      o << "longhaul_site_state{site=\"" << label_value(id) << "\",state=\"" << st << "\"} "
        << (s.state == st ? 1 : 0) << '\n';
  }
  auto field_num = [](const nlohmann::json& f, const std::string& k) -> std::optional<double> {
    auto it = f.find(k);
    if (it == f.end()) return std::nullopt;
    if (it->is_boolean()) return it->get<bool>() ? 1.0 : 0.0;
    if (it->is_number()) return it->get<double>();
    return std::nullopt;
  };
  head(o, "longhaul_site_uploads_total", "Uploads per site by verdict.", "counter");
  for (const auto& [id, s] : m.sites)
    for (const char* v : {"accepted", "rejected"})
      if (auto x = field_num(s.fields, std::string("uploads_") + v))
        o << "longhaul_site_uploads_total{site=\"" << label_value(id) << "\",verdict=\"" << v << "\"} "
          << num(*x) << '\n';
  for (const auto& [field, name, help] :
       {std::tuple{"resyncs", "longhaul_site_resyncs_total", "Full resyncs per site."},
        std::tuple{"protocol_errors", "longhaul_site_protocol_errors_total",
                   "Connections closed for a protocol error, per site."}}) {
    bool any = false;
    for (const auto& [id, s] : m.sites) any |= field_num(s.fields, field).has_value();
    if (!any) continue;
    head(o, name, help, "counter");
    for (const auto& [id, s] : m.sites)
      if (auto x = field_num(s.fields, field))
        o << name << "{site=\"" << label_value(id) << "\"} " << num(*x) << '\n';
  }
  // Every other numeric per-site field, as a gauge (fields added to the status later appear here).
  std::set<std::string> generic;
  for (const auto& [id, s] : m.sites)
    for (auto it = s.fields.begin(); it != s.fields.end(); ++it)
      if (!kDedicated.count(it.key()) && (it->is_number() || it->is_boolean())) generic.insert(it.key());
  for (const auto& field : generic) {
    const std::string name = "longhaul_site_" + name_part(field);
    const std::string help = "The site's '" + name_part(field) + "' status field.";
    head(o, name, help.c_str(), "gauge");
    for (const auto& [id, s] : m.sites)
      if (auto x = field_num(s.fields, field))
        o << name << "{site=\"" << label_value(id) << "\"} " << num(*x) << '\n';
  }

  // ---- round phases
  if (!m.phase_seconds.empty()) {
    head(o, "longhaul_round_phase_seconds",
         "Time spent per round in each phase of closing it (wait_uploads, aggregation, outer_step, "
         "checkpoint, publish, evaluation).", "histogram");
    for (const auto& [phase, h] : m.phase_seconds) {
      const std::string l = "phase=\"" + label_value(phase) + "\"";
      uint64_t cum = 0;
      for (size_t i = 0; i < h.bounds.size(); ++i) {
        cum += i < h.counts.size() ? h.counts[i] : 0;
        o << "longhaul_round_phase_seconds_bucket{" << l << ",le=\"" << num(h.bounds[i]) << "\"} " << cum << '\n';
      }
      o << "longhaul_round_phase_seconds_bucket{" << l << ",le=\"+Inf\"} " << h.count << '\n';
      o << "longhaul_round_phase_seconds_sum{" << l << "} " << num(h.sum) << '\n';
      o << "longhaul_round_phase_seconds_count{" << l << "} " << h.count << '\n';
    }
  }
  std::string out = o.str();
  if (m.process_metrics) out += render_process_metrics();
  return out;
}

std::string render_process_metrics() {
  std::ostringstream o;
  // /proc/self/stat: fields after the parenthesised command name (which may hold spaces).
  std::ifstream stat("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  if (close != std::string::npos && ticks > 0) {
    std::istringstream f(text.substr(close + 2));
    std::vector<std::string> v;  // v[0] is field 3 (state)
    for (std::string s; f >> s;) v.push_back(s);
    auto fld = [&](size_t n) { return std::stod(v.at(n - 3)); };  // 1-based field n of proc(5)
    try {
      const double cpu = (fld(14) + fld(15)) / ticks, threads = fld(20), vsize = fld(23),
                   rss = fld(24) * page, start_ticks = fld(22);
      head(o, "process_cpu_seconds_total", "User and system CPU time spent in seconds.", "counter");
      o << "process_cpu_seconds_total " << num(cpu) << '\n';
      head(o, "process_threads", "Threads of the process.", "gauge");
      o << "process_threads " << num(threads) << '\n';
      head(o, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge");
      o << "process_virtual_memory_bytes " << num(vsize) << '\n';
      head(o, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
      o << "process_resident_memory_bytes " << num(rss) << '\n';
      std::ifstream ps("/proc/stat");
      for (std::string key; ps >> key;) {
        double btime = 0;
        if (key != "btime" || !(ps >> btime)) continue;
        head(o, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge");
        o << "process_start_time_seconds " << num(btime + start_ticks / ticks) << '\n';
        break;
      }
    } catch (const std::exception&) {  // an unexpected /proc format: leave the rest out
    }
  }
  // opendir, not std::filesystem: libtorch.so exports its own copies of some std::filesystem
  // functions (see tests/outer/test_dirs.h).
  if (DIR* d = ::opendir("/proc/self/fd")) {
    size_t fds = 0;
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++fds;
    ::closedir(d);
    head(o, "process_open_fds", "Number of open file descriptors.", "gauge");
    o << "process_open_fds " << fds - 1 << '\n';  // less the one opendir holds
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    head(o, "process_max_fds", "Maximum number of open file descriptors.", "gauge");
    o << "process_max_fds " << num(static_cast<double>(rl.rlim_cur)) << '\n';
  }
  return o.str();
}

}  // namespace longhaul::outer
