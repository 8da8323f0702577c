#include "outer/coordinator_metrics.h"

#include <sstream>

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

void head(std::ostream& o, const char* name, const char* help, const char* type) {
  o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

}  // namespace

std::string render_prometheus(const CoordinatorMetrics& m) {
  std::ostringstream o;
  head(o, "longhaul_rounds_total", "Outer rounds applied.", "counter");
  o << "longhaul_rounds_total " << m.rounds_total << '\n';
  head(o, "longhaul_round_duration_seconds", "Duration of the last round.", "gauge");
  o << "longhaul_round_duration_seconds " << m.last_round_duration_s << '\n';
  head(o, "longhaul_sites_connected", "Sites joined now.", "gauge");
  o << "longhaul_sites_connected " << m.sites_connected << '\n';
  head(o, "longhaul_rejected_uploads_total", "Uploads refused.", "counter");
  o << "longhaul_rejected_uploads_total " << m.rejected_uploads_total << '\n';
  head(o, "longhaul_bytes_received_total", "Upload payload bytes per site.", "counter");
  for (const auto& [id, s] : m.sites)
    o << "longhaul_bytes_received_total{site=\"" << label_value(id) << "\"} " << s.bytes_received << '\n';
  head(o, "longhaul_bytes_sent_total", "Download payload bytes per site.", "counter");
  for (const auto& [id, s] : m.sites)
    o << "longhaul_bytes_sent_total{site=\"" << label_value(id) << "\"} " << s.bytes_sent << '\n';
  head(o, "longhaul_protocol_errors_total", "Connections closed for a protocol violation, by site and reason.",
       "counter");
  for (const auto& e : m.protocol_errors)
    o << "longhaul_protocol_errors_total{site=\"" << label_value(e.site) << "\",reason=\"" << label_value(e.reason)
      << "\"} " << e.count << '\n';
  if (m.eval_loss) {
    head(o, "longhaul_eval_loss", "Held-out loss of θ (nats/token).", "gauge");
    o << "longhaul_eval_loss " << *m.eval_loss << '\n';
  }
  return o.str();
}

}  // namespace longhaul::outer
