// Opening and closing rounds. The close is the run's critical path (every site waits for the
// result): aggregation tail, outer step, encode of the update, publish. Evaluation, the metrics
// line and the snapshot come after the result was sent.
#include <chrono>

#include "common/log.h"
#include "outer/coordinator_impl.h"
#include "outer/parallel_for.h"
#include "outer/param_hash.h"
#include "outer/wire_bytes.h"
#include "transport/codec.h"

namespace longhaul::outer {

using json = nlohmann::json;
using transport::Message;

namespace {
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
}  // namespace

bool Coordinator::Impl::ready_to_open() {
  const int64_t joined = sites.welcomed_count();
  if (resumed_at_round >= 0 && next_round == resumed_at_round) {
    // The first round after a restart: the sites that contributed to the last applied round may
    // hold uploads the previous process accepted and lost; wait (up to one round deadline) for
    // them to rejoin so that they can re-send those uploads instead of being left out.
    bool all_back = joined >= policy.min_sites;
    for (const auto& [id, s] : sites)
      if (s.last_round_uploaded >= next_round - 1 && !s.welcomed) all_back = false;
    if (all_back) return true;
    return joined >= policy.min_sites && seconds_since(started) > policy.round_deadline_s;
  }
  const int64_t want = next_round == 0 && cfg.start_sites > 0 ? cfg.start_sites : policy.min_sites;
  if (joined >= want) return true;
  return joined >= policy.min_sites && seconds_since(started) > cfg.start_timeout_s;
}

void Coordinator::Impl::open_round() {
  if (auto changed = watcher->current(); !(changed == policy)) {
    LH_LOG(Info, "coordinator") << "sync policy from round " << next_round << ": "
                                << describe_change(policy, changed);
  }
  policy = watcher->current();
  history.note_policy(next_round, sync_policy_json(policy));
  const std::set<std::string> members = sites.welcomed();
  const auto deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(policy.round_deadline_s * 1000));
  round.open(next_round, members, deadline, static_cast<int>(policy.min_sites));
  round_inner_steps = plan_inner_steps(parse_balance(policy.balance), policy.inner_steps,
                                       policy.min_inner_steps, members, step_rates.rates());
  agg->begin_round(theta_pub_norm, static_cast<int>(policy.min_sites));
  round_started = Clock::now();
  round_bytes_up = 0;
  round_bytes_up_raw = 0;
  snapshot_dirty = true;
  LH_LOG(Info, "coordinator") << "round " << next_round << " open: " << members.size()
                              << " sites, H=" << policy.inner_steps << ", up " << policy.upload_encoding
                              << ", down " << policy.download_encoding << ", zstd "
                              << policy.zstd_level << ", deadline "
                              << policy.round_deadline_s << " s";
  if (policy.balance != "equal_steps") {
    std::string plan;
    for (const auto& [id, h] : round_inner_steps) {
      auto r = step_rates.rates().find(id);
      plan += " " + id + "=" + std::to_string(h) +
              (r == step_rates.rates().end() ? "" : " (" + std::to_string(r->second) + " steps/s)");
    }
    LH_LOG(Info, "coordinator") << "round " << next_round << " " << policy.balance << " plan:" << plan;
  }
  for (const auto& id : members) send_round_start(id);
}

void Coordinator::Impl::close_round() {
  const auto t_close = Clock::now();
  const int64_t r = round.round();
  const size_t n = theta_pub.size();
  std::vector<float> buf(n);
  phases.start(round_started);
  const bool applied = agg->finish(buf);
  phases.lap("aggregation");
  const double outer_lr = outer->next_lr();  // warmup applied
  if (applied) outer->step(buf);
  // Publish: u = θ_master − θ_pub, quantised for download; every replica (this one included)
  // adds exactly the decoded u, so all stay bitwise identical. What quantisation loses stays
  // in θ_master − θ_pub and is sent in a later round (error feedback on the download side).
  // Nothing accepted: no step and no update (empty payload), θ stays bitwise unchanged.
  transport::Bytes payload;
  uint64_t raw_one = 0;  // the result payload's bytes before zstd
  if (applied) {
    parallel_sub(outer->params(), theta_pub, buf);
    transport::CodecOptions o;
    o.encoding = transport::parse_encoding(policy.download_encoding);
    o.zstd_level = static_cast<int>(policy.zstd_level);
    payload = transport::encode(buf, manifest, o);
    raw_one = raw_payload_bytes(transport::inspect(payload, n));
    transport::decode(payload, buf, manifest_hash);
    parallel_add_inplace(theta_pub, buf);
    theta_pub_hash = param_hash(theta_pub);
    theta_pub_norm = parallel_norm(theta_pub).norm;
  }
  buf = {};
  round.close();
  next_round = r + 1;
  schedule_steps += policy.inner_steps;
  std::vector<std::string> contributors;
  for (const auto& [id, ok] : round.outcomes())
    if (ok) contributors.push_back(id);
  phases.lap("outer_step");
  const auto t_ckpt = Clock::now();
  save_checkpoint();  // before publishing: a crash after this never re-applies round r
  const double ckpt_s = seconds_since(t_ckpt);
  phases.lap("checkpoint");

  // One message for every site (no per-site header field): its payload exists once in memory.
  auto result = std::make_shared<Message>();
  result->type = protocol::kRoundResult;
  result->header = {{"run_id", run_id},
                    {"fragment", 0},
                    {"round", r},
                    {"next_round", next_round},
                    {"applied", applied},
                    {"contributors", contributors},
                    {"param_hash", protocol::hex64(theta_pub_hash)}};
  result->payload = std::move(payload);
  const uint64_t wire_one = result->payload.size();
  const uint64_t bytes_down = broadcast(result);
  phases.lap("publish");
  const uint64_t bytes_down_raw = wire_one ? bytes_down / wire_one * raw_one : 0;
  const double tail_s = seconds_since(t_close);
  const double dur = seconds_since(round_started);
  const bool last = next_round >= cfg.rounds;
  double eval = std::nan("");
  const auto t_eval = Clock::now();
  if (evaluator->enabled() && (last || (cfg.eval.every_rounds > 0 && next_round % cfg.eval.every_rounds == 0)))
    eval = last_eval = evaluator->loss(theta_pub);
  const double eval_s = seconds_since(t_eval);
  phases.lap("evaluation");
  phases.finish();
  // What synchronous data parallel would have sent for the same steps: a ring all-reduce of
  // fp32 gradients per step moves 2(K−1)/K · 4N bytes per worker, i.e. 2(K−1) · 4N in all.
  const int64_t k = static_cast<int64_t>(round.participants().size());
  const double dp_bytes = static_cast<double>(policy.inner_steps) * 2.0 * (k - 1) * 4.0 * n;
  json line = {{"event", "round"},
               {"round", r},
               {"sites", contributors},
               {"participants", k},
               {"applied", applied},
               {"inner_steps", policy.inner_steps},
               {"inner_steps_by_site", round_inner_steps},
               {"bytes_up", round_bytes_up},
               {"bytes_down", bytes_down},
               // The same before the lossless stage (equal when sync.zstd_level = 0).
               {"bytes_up_raw", round_bytes_up_raw},
               {"bytes_down_raw", bytes_down_raw},
               {"zstd_level", policy.zstd_level},
               {"dp_bytes", dp_bytes},
               {"duration_s", dur},
               {"tail_s", tail_s},
               {"checkpoint_s", ckpt_s},
               {"eval_s", eval_s},
               {"elapsed_s", seconds_since(started)},
               {"param_hash", protocol::hex64(theta_pub_hash)},
               {"time", unix_now_s()}};
  if (!std::isnan(eval)) line["eval_loss"] = eval;
  if (applied) {  // the outer step: its lr and ‖Δ̄‖₂ before/after outer.max_update_norm
    line["outer_lr"] = outer_lr;
    line["delta_norm"] = outer->last_delta_norm();
    line["delta_norm_clipped"] = outer->last_clipped_norm();
  }
  // The sites' own held-out losses of θ_r (this round's starting point), weighted by the
  // tokens each evaluated: the run's loss without any data at the coordinator.
  double wsum = 0, lsum = 0;
  json per_site = json::object();
  for (const auto& [id, s] : sites) {
    const json& rep = s.report;
    if (rep.value("eval_round", int64_t{-1}) != r || !rep.contains("eval_loss")) continue;
    const double w = rep.value("eval_tokens", 0.0), l = rep.value("eval_loss", 0.0);
    per_site[id] = l;
    wsum += w;
    lsum += w * l;
  }
  if (wsum > 0) {
    line["site_eval_loss"] = lsum / wsum;
    line["site_eval"] = per_site;
    last_site_eval = lsum / wsum;
  }
  *metrics_file << line.dump() << "\n";
  metrics_file->flush();
  last_round = line;
  history.add_round(line);
  snapshot_dirty = true;
  LH_LOG(Info, "coordinator") << "round " << r << " closed in " << dur << " s (tail " << tail_s << " s): "
                              << contributors.size() << "/" << round.participants().size() << " sites, up "
                              << round_bytes_up << " B, down " << bytes_down << " B (sync DP: " << dp_bytes
                              << " B)" << (std::isnan(eval) ? "" : ", eval loss " + std::to_string(eval))
                              << ", θ hash " << protocol::hex64(theta_pub_hash);
}

}  // namespace longhaul::outer
