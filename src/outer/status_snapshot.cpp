// The coordinator's HTTP snapshot: /v1/status (JSON) and /metrics (Prometheus text), rebuilt by
// the state thread when something changed (and at most about once a second otherwise, for the
// "last seen" ages), and served by the I/O threads under snap_mu. Nothing here is O(N) in the
// model size: θ's hash is cached when θ changes.
#include "outer/coordinator_impl.h"
#include "outer/coordinator_metrics.h"

namespace longhaul::outer {

using json = nlohmann::json;

void Coordinator::Impl::publish_snapshot() {
  json sj = json::object();
  int connected = 0;
  for (const auto& [id, s] : sites) {
    sj[id] = s.to_json();
    connected += s.welcomed;
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  json st = {{"run_id", run_id},
             {"round", next_round},
             {"round_open", round.is_open()},
             {"rounds_total", cfg.rounds},
             {"state", next_round >= cfg.rounds ? "complete" : round.is_open() ? "training" : "waiting"},
             {"elapsed_s", elapsed},
             {"inner_steps", policy.inner_steps},
             {"min_sites", policy.min_sites},
             {"upload_encoding", policy.upload_encoding},
             {"download_encoding", policy.download_encoding},
             {"aggregation", to_string(cfg.aggregation.kind)},
             {"param_hash", protocol::hex64(theta_pub_hash)},
             {"sites", sj},
             {"last_round", last_round},
             {"rejected_uploads", rejected_total},
             {"protocol_errors", protocol_errors_total},
             {"internal_errors", internal_errors}};
  if (cfg.streaming.streaming())  // the fixed streaming schedule and the open round's fragment
    st["streaming"] = {{"fragments", layout.size()},
                       {"overlap_steps", cfg.streaming.overlap_steps},
                       {"merge_alpha", cfg.streaming.merge_alpha},
                       {"fragment", round_fragment}};
  if (!std::isnan(last_eval)) st["eval_loss"] = last_eval;
  if (!std::isnan(last_site_eval)) st["site_eval_loss"] = last_site_eval;
  CoordinatorMetrics mt;
  mt.rounds_total = next_round;
  mt.last_round_duration_s = last_round.value("duration_s", 0.0);
  mt.sites_connected = connected;
  mt.rejected_uploads_total = rejected_total;
  for (const auto& [id, s] : sites) mt.sites[id] = {s.bytes_up, s.bytes_down, s.state, sj[id]};
  mt.rounds_planned = cfg.rounds;
  mt.round_open = round.is_open();
  mt.hash_resyncs_total = hash_resyncs;
  mt.phase_seconds = phases.histograms();
  for (const auto& [key, count] : protocol_errors_by) {
    const auto tab = key.find('\t');
    mt.protocol_errors.push_back({key.substr(0, tab), key.substr(tab + 1), count});
  }
  if (!std::isnan(last_eval)) mt.eval_loss = last_eval;
  std::string text = render_prometheus(mt);
  std::lock_guard<std::mutex> l(snap_mu);
  status = std::move(st);
  metrics_text = std::move(text);
  snapshot_dirty = false;
}

}  // namespace longhaul::outer
