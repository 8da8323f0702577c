// The coordinator's Prometheus exposition (`GET /metrics`, text format 0.0.4): what is counted
// and how it is rendered, apart from the round machinery that fills it in.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace longhaul::outer {

struct CoordinatorMetrics {
  int64_t rounds_total = 0;             // outer rounds applied
  double last_round_duration_s = 0;     // seconds
  int sites_connected = 0;              // welcomed sites now
  int64_t rejected_uploads_total = 0;   // uploads refused (any reason)
  struct PerSite {
    uint64_t bytes_received = 0;        // upload payload bytes
    uint64_t bytes_sent = 0;            // download payload bytes
  };
  std::map<std::string, PerSite> sites;  // by site id
  std::optional<double> eval_loss;       // held-out loss of θ, nats/token; absent before the first eval
  struct ProtocolErrors {
    std::string site;    // peer id (certificate CN)
    std::string reason;  // short label: "upload.tokens", "before_hello", ...
    int64_t count = 0;
  };
  std::vector<ProtocolErrors> protocol_errors;  // connections closed for protocol violations
};

// Renders every metric with its HELP and TYPE lines. Site ids are label values: backslash,
// double quote and newline are escaped as the format requires, so any id yields valid text.
std::string render_prometheus(const CoordinatorMetrics& m);

}  // namespace longhaul::outer
