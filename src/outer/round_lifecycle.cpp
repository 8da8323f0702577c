// Opening and closing rounds. The close is the run's critical path (every site waits for the
// result): aggregation tail, outer step, encode of the update, publish. Evaluation, the metrics
// line and the snapshot come after the result was sent.
#include <chrono>
#include <cstring>

#include "common/log.h"
#include "outer/coordinator_impl.h"
#include "outer/fragment_merge.h"
#include "outer/fragment_schedule.h"
#include "outer/parallel_for.h"
#include "outer/param_hash.h"
#include "outer/wire_bytes.h"
#include "transport/bytes.h"
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
  if (auto changed = watcher->current(); !(changed == configured)) {
    LH_LOG(Info, "coordinator") << "sync policy from round " << next_round << ": "
                                << describe_change(configured, changed);
    configured = changed;
  }
  const int64_t previous_h = policy.inner_steps;
  const bool was_auto = policy.auto_inner_steps;
  policy = configured;
  const std::set<std::string> members = sites.welcomed();
  const Balance balance = parse_balance(policy.balance);
  auto_h = nullptr;
  if (policy.auto_inner_steps) {
    const AutoInnerSteps a =
        choose_auto_inner_steps(balance, policy.target_comm_fraction, policy.min_inner_steps,
                                policy.max_inner_steps, was_auto ? previous_h : policy.min_inner_steps,
                                members, speeds.all());
    policy.inner_steps = a.h;
    auto_h = {{"h", a.h}, {"measured", a.measured}, {"target_comm_fraction", policy.target_comm_fraction},
              {"inputs", a.inputs}};
    LH_LOG(Info, "coordinator") << "round " << next_round << " auto H = " << a.h
                                << (a.measured ? " from " : " (not all sites measured yet) ") << a.inputs.dump();
  }
  history.note_policy(next_round, sync_policy_json(policy));
  auto deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(policy.round_deadline_s * 1000));
  round.open(next_round, members, deadline, static_cast<int>(policy.min_sites));
  // Streaming: this round exchanges one fragment, after its gap of the H-step schedule (the
  // config guarantees equal_steps and a fixed H >= P then). P = 1: fragment 0 after H steps.
  const FragmentSchedule schedule(layout.size(), policy.inner_steps);
  round_fragment = schedule.fragment_of_round(next_round);
  round_h = schedule.steps_before(round_fragment);
  round_inner_steps = plan_inner_steps(balance, round_h, policy.min_inner_steps, members, speeds.step_rates());
  recent_plans[next_round] = round_inner_steps;
  while (recent_plans.size() > 16) recent_plans.erase(recent_plans.begin());
  if (balance == Balance::kEqualTime) {
    // Close once the slowest member should be done, plus a margin; later uploads count in the
    // next round (staleness-discounted). Unmeasured members: the configured deadline only.
    if (auto expect = expected_round_s(round_inner_steps, speeds.all())) {
      const double s = (1 + policy.straggler_margin) * *expect;
      round.advance_deadline(Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(s * 1000)));
      LH_LOG(Info, "coordinator") << "round " << next_round << " expected in " << *expect
                                  << " s: closes with a quorum after " << s << " s";
    }
  }
  // The norm filter's absolute reference: ‖θ‖ of the slice this round changes.
  const double ref_norm =
      layout.size() == 1 ? theta_pub_norm : parallel_norm(layout.gather(round_fragment, theta_pub)).norm;
  agg().begin_round(ref_norm, static_cast<int>(policy.min_sites));
  round_folds = json::array();
  round_started = Clock::now();
  round_bytes_up = 0;
  round_bytes_up_raw = 0;
  snapshot_dirty = true;
  LH_LOG(Info, "coordinator") << "round " << next_round << " open: " << members.size()
                              << " sites, H=" << policy.inner_steps
                              << (layout.size() > 1 ? ", fragment " + std::to_string(round_fragment) + " after " +
                                                          std::to_string(round_h) + " steps"
                                                    : std::string())
                              << ", up " << policy.upload_encoding
                              << ", down " << policy.download_encoding << ", zstd "
                              << policy.zstd_level << ", deadline "
                              << policy.round_deadline_s << " s";
  if (policy.balance != "equal_steps") {
    std::string plan;
    for (const auto& [id, h] : round_inner_steps) {
      const SiteSpeed* sp = speeds.find(id);
      plan += " " + id + "=" + std::to_string(h) +
              (sp && sp->steps_per_s > 0 ? " (" + std::to_string(sp->steps_per_s) + " steps/s)" : "");
    }
    LH_LOG(Info, "coordinator") << "round " << next_round << " " << policy.balance << " plan:" << plan;
  }
  for (const auto& id : members) send_round_start(id);
  // Late uploads that arrived while no round was open count in this one.
  auto held = std::move(deferred_stale);
  deferred_stale.clear();
  for (auto& [id, m] : held) {
    try {
      on_upload(id, m);
    } catch (const JournalError&) {
      throw;  // the coordinator's own disk failed: the run stops (see JournalError)
    } catch (const std::exception& e) {  // it parsed when it arrived; nothing else may end the run
      LH_LOG(Error, "coordinator") << "held late upload from " << id << " dropped: " << e.what();
    }
  }
}

void Coordinator::Impl::close_round() {
  const auto t_close = Clock::now();
  const int64_t r = round.round();
  // Every participant reported: the close follows the last upload at once (the tail's start).
  const bool closed_on_last_upload =
      !round.participants().empty() && round.outcomes().size() == round.participants().size();
  const int f = round_fragment;
  const size_t n = theta_pub.size();
  // The last checkpoint's write (in the background since that round's publish) must be done
  // before the outer step changes what it reads.
  const auto t_wait = Clock::now();
  await_checkpoint();
  const double checkpoint_wait_s = seconds_since(t_wait);
  phases.start(round_started);
  // Memory (issue 13 §1): Δ̄ is finished in place in the aggregator's accumulator, which then
  // holds u and its decoded form in turn; with θ master, momentum and θ_pub that is 4 × 4N.
  const std::span<float> buf = agg().finish();
  const bool applied = !buf.empty();
  phases.lap("aggregation");
  const double outer_lr = outer->next_lr(f);  // warmup applied
  transport::CodecOptions o;
  o.encoding = transport::parse_encoding(policy.download_encoding);
  o.zstd_level = static_cast<int>(policy.zstd_level);
  // Nothing accepted: no step and no update (empty payload), θ stays bitwise unchanged.
  transport::Bytes payload;
  uint64_t raw_one = 0;  // the result payload's bytes before zstd
  if (applied) {
    payload = apply_round_update(f, buf, o);
    raw_one = raw_payload_bytes(transport::inspect(payload, buf.size()));
  }
  round.close();
  next_round = r + 1;
  schedule_steps += round_h;
  std::vector<std::string> contributors;
  for (const auto& [id, ok] : round.outcomes())
    if (ok) contributors.push_back(id);
  std::vector<std::string> stale_contributors;  // their round r − 1 uploads, counted here
  for (const auto& [id, ok] : round.stale_outcomes())
    if (ok) stale_contributors.push_back(id);
  phases.lap("round_state");
  // Before publishing, the round's journal record (small; its uploads are on disk already):
  // a crash from here on redoes round r from the journal, never re-applies or loses it.
  const json meta = checkpoint_meta();
  journal->write_record(r, {{"round", r},
                            {"fragment", f},
                            {"applied", applied},
                            {"folds", round_folds},
                            {"encoding", policy.download_encoding},
                            {"zstd_level", o.zstd_level},
                            {"param_hash", protocol::hex64(theta_pub_hash)},
                            {"meta", meta}});
  phases.lap("journal");

  // One message for every site (no per-site header field): its payload exists once in memory.
  auto result = std::make_shared<Message>();
  result->type = protocol::kRoundResult;
  result->header = {{"run_id", run_id},
                    {"fragment", f},
                    {"round", r},
                    {"next_round", next_round},
                    {"applied", applied},
                    {"contributors", contributors},
                    {"stale_contributors", stale_contributors},
                    {"param_hash", protocol::hex64(theta_pub_hash)}};
  result->payload = std::move(payload);
  const uint64_t wire_one = result->payload.size();
  const uint64_t bytes_down = broadcast(result);
  phases.lap("publish");
  // The checkpoint of round r, in the background (the next close waits for it); once it is
  // durable, round r's journal goes.
  CoordinatorStateView view = checkpoint_view();
  view.meta = meta;
  checkpoint_writer.start(coordinator_checkpoint_path(run_dir), std::move(view),
                          [j = journal.get(), r] { j->forget_through(r); }, checkpoint_pause_s);
  const uint64_t bytes_down_raw = wire_one ? bytes_down / wire_one * raw_one : 0;
  // The tail: from the start of handling the round's last upload (its scan and fold, or its
  // refusal) to the result sent; when the round closed on its deadline, from the close.
  const double close_s = seconds_since(t_close);
  const double tail_s = close_s + (closed_on_last_upload ? last_fold_s : 0.0);
  const double dur = seconds_since(round_started);
  const bool last = next_round >= cfg.rounds;
  // What synchronous data parallel would have sent for the same steps: a ring all-reduce of
  // fp32 gradients per step moves 2(K−1)/K · 4N bytes per worker, i.e. 2(K−1) · 4N in all.
  const int64_t k = static_cast<int64_t>(round.participants().size());
  const double dp_bytes = static_cast<double>(round_h) * 2.0 * (k - 1) * 4.0 * n;
  json line = {{"event", "round"},
               {"round", r},
               {"sites", contributors},
               {"stale_sites", stale_contributors},
               {"participants", k},
               {"applied", applied},
               {"inner_steps", round_h},
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
               {"close_s", close_s},
               // waiting for the previous round's background checkpoint write (normally 0)
               {"checkpoint_wait_s", checkpoint_wait_s},
               {"fold_s", last_fold_s},
               {"tail_phases", phases.current()},
               {"elapsed_s", seconds_since(started)},
               {"param_hash", protocol::hex64(theta_pub_hash)},
               {"time", unix_now_s()}};
  if (!auto_h.is_null()) line["auto_inner_steps"] = auto_h;
  if (cfg.report_memcpy && !buf.empty()) {  // the tail's yardstick: one memcpy of θ (4N bytes)
    const auto t = Clock::now();
    std::memcpy(buf.data(), theta_pub.data(), std::min(buf.size(), theta_pub.size()) * sizeof(float));
    line["memcpy_s"] = seconds_since(t) * static_cast<double>(n) / static_cast<double>(std::min(buf.size(), n));
  }
  if (layout.size() > 1) {  // streaming: which slice of θ this round changed, and its size
    line["fragment"] = f;
    line["fragment_elements"] = layout.fragment(f).numel;
  }
  // Each site's figures from its upload for this round (utilisation, transfers): issue 10 §4.
  json timing = json::object();
  for (const auto& [id, s] : sites)
    if (s.report.value("round", int64_t{-1}) == r) {
      json t = json::object();
      for (const char* k : {"compute_s", "wait_s", "cycle_s", "utilisation", "upload_s", "upload_bytes",
                            "download_s", "download_bytes", "inner_steps", "last_tokens", "stale"})
        if (s.report.contains(k)) t[k] = s.report[k];
      timing[id] = std::move(t);
    }
  if (!timing.empty()) line["site_timing"] = std::move(timing);
  if (applied) {  // the outer step: its lr, ‖Δ̄‖₂ before/after the clip and the clip used
    line["outer_lr"] = outer_lr;
    line["delta_norm"] = outer->last_delta_norm(f);
    line["delta_norm_clipped"] = outer->last_clipped_norm(f);
    line["delta_norm_cap"] = outer->last_cap(f);  // 0: no clip
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
  LH_LOG(Info, "coordinator") << "round " << r << " closed in " << dur << " s (tail " << tail_s << " s): "
                              << contributors.size() << "/" << round.participants().size() << " sites, up "
                              << round_bytes_up << " B, down " << bytes_down << " B (sync DP: " << dp_bytes
                              << " B), θ hash " << protocol::hex64(theta_pub_hash);
  closed_line = std::move(line);
  closed_line_eval =
      evaluator->enabled() && (last || (cfg.eval.every_rounds > 0 && next_round % cfg.eval.every_rounds == 0));
}

transport::Bytes Coordinator::Impl::apply_round_update(int f, std::span<float> buf, const transport::CodecOptions& o) {
  const transport::Manifest& fman = layout.manifest(f);  // P = 1: all of θ
  outer->step_in_place(f, buf);
  phases.lap("outer_step");
  // Publish: u = θ_master − θ_pub, quantised for download; every replica (this one included)
  // adds exactly the decoded u, so all stay bitwise identical. What quantisation loses stays
  // in θ_master − θ_pub and is sent in a later round (error feedback on the download side).
  if (layout.size() == 1) {
    parallel_sub(outer->params(), theta_pub, buf);
  } else {  // u_f = θ_master[f] − θ_pub[f]
    const std::vector<float> pub = layout.gather(f, theta_pub);
    parallel_sub(outer->params(f), pub, buf);
  }
  transport::Bytes payload = transport::encode(buf, fman, o);
  phases.lap("encode");
  if (layout.size() == 1) {
    transport::decode_accumulate(payload, theta_pub, 1.0f, fman.hash());  // as every site adds it
  } else {
    transport::decode(payload, buf, fman.hash());
    add_to_fragment(layout, f, buf, theta_pub);  // as every site adds it
  }
  phases.lap("apply_update");
  theta_pub_hash = param_hash(theta_pub);
  theta_pub_norm = parallel_norm(theta_pub).norm;
  phases.lap("hash_and_norm");
  return payload;
}

void Coordinator::Impl::finish_round_line() {
  if (closed_line.is_null()) return;
  json line = std::move(closed_line);
  closed_line = nullptr;
  const auto t_eval = Clock::now();
  if (closed_line_eval) {
    // The freed payload buffers kept for reuse go first: the model's activations take their
    // place (issue 13 §1's budget), and the next round allocates afresh once.
    transport::release_recycled();
    line["eval_loss"] = last_eval = evaluator->loss(theta_pub);  // θ_pub: the round's result
  }
  line["eval_s"] = seconds_since(t_eval);
  phases.lap("evaluation");  // (also the opening of the next round, which came first)
  phases.finish();
  *metrics_file << line.dump() << "\n";
  metrics_file->flush();
  last_round = line;
  history.add_round(line);
  snapshot_dirty = true;
  if (line.contains("eval_loss"))
    LH_LOG(Info, "coordinator") << "round " << line["round"].get<int64_t>() << ": eval loss "
                                << line["eval_loss"].get<double>();
}

}  // namespace longhaul::outer
