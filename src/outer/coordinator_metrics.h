// The coordinator's Prometheus exposition (`GET /metrics`, text format 0.0.4): what is counted
// and how it is rendered, apart from the round machinery that fills it in.
//
// Metric names (site ids are label values, escaped as the format requires):
//   longhaul_rounds_total, longhaul_rounds_planned, longhaul_round_open,
//   longhaul_round_duration_seconds (last round), longhaul_sites_connected,
//   longhaul_rejected_uploads_total, longhaul_hash_resyncs_total, longhaul_eval_loss,
//   longhaul_bytes_received_total{site}, longhaul_bytes_sent_total{site},
//   longhaul_site_state{site,state} (1 for the site's state, 0 for the others),
//   longhaul_site_uploads_total{site,verdict="accepted"|"rejected"}, longhaul_site_resyncs_total{site},
//   longhaul_site_protocol_errors_total{site}, longhaul_site_<field>{site} (a gauge for every
//   other numeric per-site status field, e.g. step_rate, utilisation, inner_steps),
//   longhaul_round_phase_seconds{phase} (histogram: wait_uploads, aggregation, outer_step,
//   checkpoint, publish, evaluation), process_* (CPU, memory, fds, threads, start time).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace longhaul::outer {

// A Prometheus histogram of seconds: cumulative "le" buckets on output.
struct Histogram {
  std::vector<double> bounds;    // bucket upper bounds, ascending (seconds)
  std::vector<uint64_t> counts;  // observations per bucket (not cumulative); size bounds+1 (+Inf)
  double sum = 0;                // sum of observations (seconds)
  uint64_t count = 0;            // observations

  // Buckets from 5 ms to 2 h, roughly x2.5 apart: round phases span both.
  static Histogram seconds();
  void observe(double v);
};

// Times the phases of closing a round: start() when the round begins to close (observes
// wait_uploads = the time since the round opened), lap(phase) after each phase (the time
// since the previous lap is added to `phase`), finish() observes each phase of this round once.
class RoundPhaseTimer {
 public:
  using Clock = std::chrono::steady_clock;
  void start(Clock::time_point round_opened);
  void lap(const std::string& phase);
  void finish();
  const std::map<std::string, Histogram>& histograms() const { return hist_; }
  // Seconds per phase of the round being closed so far (cleared by finish()).
  const std::map<std::string, double>& current() const { return pending_; }

 private:
  Clock::time_point last_{};
  std::map<std::string, double> pending_;  // seconds per phase of the closing round
  std::map<std::string, Histogram> hist_;
};

struct CoordinatorMetrics {
  int64_t rounds_total = 0;             // outer rounds applied
  int64_t rounds_planned = 0;           // coordinator.rounds (0 = not set)
  bool round_open = false;              // a round is in progress
  double last_round_duration_s = 0;     // seconds
  int sites_connected = 0;              // welcomed sites now
  int64_t rejected_uploads_total = 0;   // uploads refused (any reason)
  int64_t hash_resyncs_total = 0;       // full resyncs sites asked for
  struct PerSite {
    uint64_t bytes_received = 0;        // upload payload bytes
    uint64_t bytes_sent = 0;            // download payload bytes
    std::string state;                  // disconnected | joined | training | uploaded; "" = unknown
    // The site's /v1/status fields. Known counters (uploads_accepted, uploads_rejected, resyncs,
    // protocol_errors) become *_total counters; every other number or bool a gauge
    // longhaul_site_<field>; bytes_up/bytes_down/state are taken from the members above.
    nlohmann::json fields = nlohmann::json::object();
  };
  std::map<std::string, PerSite> sites;  // by site id
  std::optional<double> eval_loss;       // held-out loss of θ, nats/token; absent before the first eval
  struct ProtocolErrors {
    std::string site;    // peer id (certificate CN)
    std::string reason;  // short label: "upload.tokens", "before_hello", ...
    int64_t count = 0;
  };
  std::vector<ProtocolErrors> protocol_errors;  // connections closed for protocol violations
  std::map<std::string, Histogram> phase_seconds;  // round phases (RoundPhaseTimer::histograms())
  bool process_metrics = true;           // append process_* from /proc/self
};

// Renders every metric with its HELP and TYPE lines. Site ids are label values: backslash,
// double quote and newline are escaped as the format requires, so any id yields valid text.
std::string render_prometheus(const CoordinatorMetrics& m);

// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds, process_threads, process_start_time_seconds (from
// /proc/self; a metric whose source cannot be read is left out).
std::string render_process_metrics();

}  // namespace longhaul::outer
