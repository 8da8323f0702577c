// The coordinator's state and the split of its work into concepts, one file each:
//   coordinator.cpp           the event loop: setup, pump, round driving, linger, shutdown
//   coordinator_handlers.cpp  the protocol handlers: hello, upload, resync; protocol errors
//   round_lifecycle.cpp       opening and closing rounds: aggregation tail, outer step, publish
//   coordinator_resume.cpp    checkpoint metadata: fresh start, resume, save
//   status_snapshot.cpp       the HTTP snapshot (/v1/status, /metrics), built off the hot path
// with the pieces they use in their own files: site_registry, event_queue, message_schema,
// aggregator, round_state, evaluator, outer_optimizer, coordinator_checkpoint.
//
// Threading: the channel's I/O threads only push ChannelEvents; one thread (run()) owns every
// member below except the snapshot (guarded by snap_mu) and the event queue (its own lock).
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "outer/aggregator.h"
#include "outer/checkpoint_writer.h"
#include "outer/config_watcher.h"
#include "outer/coordinator.h"
#include "outer/coordinator_config.h"
#include "outer/coordinator_metrics.h"
#include "outer/evaluator.h"
#include "outer/fragment_layout.h"
#include "outer/fragment_outer.h"
#include "outer/inner_steps_plan.h"
#include "outer/event_queue.h"
#include "outer/message_schema.h"
#include "outer/outer_optimizer.h"
#include "outer/round_journal.h"
#include "outer/round_state.h"
#include "outer/run_history.h"
#include "outer/site_registry.h"
#include "transport/channel_server.h"
#include "transport/codec.h"
#include "transport/manifest.h"

namespace longhaul::outer {

struct Coordinator::Impl {
  Impl(CoordinatorConfig c, std::filesystem::path config, std::vector<std::string> ovr,
       std::filesystem::path dir);

  CoordinatorConfig cfg;
  std::filesystem::path config_path, run_dir;
  std::vector<std::string> overrides;

  // Model, θ and the outer step.
  transport::Manifest manifest;
  uint64_t manifest_hash = 0;
  // Streaming DiLoCo (issue #11): P fragments of θ (P = cfg.streaming.fragments; 1 = all of θ),
  // each with its own aggregation (norm history) and outer step; rounds form one sequence,
  // round r exchanging fragment FragmentSchedule::fragment_of_round(r).
  FragmentLayout layout;
  std::unique_ptr<FragmentOuter> outer;
  std::vector<float> theta_pub;    // published θ: bitwise what every site holds
  uint64_t theta_pub_hash = 0;     // param_hash(theta_pub), updated whenever theta_pub changes
  std::weak_ptr<const transport::Bytes> welcome_theta;  // θ_pub encoded for welcomes still queued
  uint64_t welcome_theta_hash = 0;                      // the theta_pub_hash it was encoded at
  double theta_pub_norm = 0;       // ‖theta_pub‖ (the norm filter's absolute reference)
  std::vector<std::unique_ptr<Aggregator>> aggs;  // per fragment
  Aggregator& agg() { return *aggs.at(static_cast<std::size_t>(round_fragment)); }
  uint64_t agg_elements() const { return layout.manifest(round_fragment).total_elements(); }
  std::unique_ptr<Evaluator> evaluator;

  // Rounds.
  std::string run_id;
  int64_t next_round = 0;
  int64_t resumed_at_round = -1;  // next_round when resumed from a checkpoint (-1: fresh start)
  // The run's progress for the sites' inner lr schedule: inner steps that a site running the
  // full H (sync.inner_steps) of every round has taken before next_round (checkpointed).
  int64_t schedule_steps = 0;
  RoundState round;
  int round_fragment = 0;  // the fragment the open (or last) round exchanges
  int64_t round_h = 0;     // its nominal inner steps: sync.inner_steps, or the fragment's gap
  SyncPolicy configured;  // [sync] as last read from the config (change detection)
  SyncPolicy policy;      // in force for the open round (inner_steps: the round's H, auto or not)
  nlohmann::json auto_h = nullptr;  // the open round's auto-H choice and its inputs (or null)
  std::map<std::string, int64_t> round_inner_steps;  // H_k of the open round (sync.balance)
  // H_k of the last rounds (round -> site -> H_k), to check stale uploads; at most 16 rounds.
  std::map<int64_t, std::map<std::string, int64_t>> recent_plans;
  // Stale uploads that arrived between rounds, handled when the next round opens (at most one
  // per site: a site is stale-eligible for one round at a time).
  std::map<std::string, transport::Message> deferred_stale;
  SiteSpeeds speeds;  // each site's measured step rate, link rates and round overhead
  // H_k of `site` in the open round; round_h for a site that joined after it opened.
  int64_t inner_steps_of(const std::string& site) const {
    auto it = round_inner_steps.find(site);
    return it == round_inner_steps.end() ? round_h : it->second;
  }
  std::unique_ptr<ConfigWatcher> watcher;
  Clock::time_point round_started{}, started = Clock::now();
  uint64_t round_bytes_up = 0;
  uint64_t round_bytes_up_raw = 0;  // the same uploads before zstd (wire_bytes.h)
  SiteRegistry sites;
  int64_t rejected_total = 0, hash_resyncs = 0, protocol_errors_total = 0, internal_errors = 0;
  std::map<std::string, int64_t> protocol_errors_by;  // "site\tlabel" -> count, for /metrics
  double last_eval = std::nan("");       // coordinator-side held-out loss (optional [data])
  double last_site_eval = std::nan("");  // token-weighted mean of the sites' held-out losses
  nlohmann::json last_round = nlohmann::json::object();
  nlohmann::json closed_line;       // the last closed round's line until finish_round_line()
  bool closed_line_eval = false;    // ... and whether θ is to be evaluated for it
  bool snapshot_dirty = true;

  EventQueue events;
  std::unique_ptr<transport::ChannelServer> server;
  std::unique_ptr<std::ofstream> metrics_file;
  RunHistory history;      // the dashboard's /v1/history
  double last_fold_s = 0;  // handling the last upload: loading, scanning, folding it in or refusing it (s)
  // Issue 13 §1: the checkpoint is written in the background after the publish; the journal
  // lets a restart redo a round published before its checkpoint was durable.
  std::unique_ptr<RoundJournal> journal;
  nlohmann::json round_folds = nlohmann::json::array();  // the open round's folds, in order
  CheckpointWriter checkpoint_writer;
  double checkpoint_pause_s = 0;  // fault injection (tests): LONGHAUL_TEST_CHECKPOINT_PAUSE_S
  RoundPhaseTimer phases;  // /metrics: longhaul_round_phase_seconds

  // HTTP snapshot.
  std::mutex snap_mu;
  nlohmann::json status = nlohmann::json::object();
  std::string metrics_text;

  // ---- coordinator.cpp
  void start_server();
  void pump(std::chrono::milliseconds wait);
  void finish_run();
  // New access lists from the config file: applied to the server at once (connections of
  // sites no longer allowed are closed; they stay participants of the open round, like any
  // disconnected site, so its quorum and deadline rules hold).
  void apply_access(const AccessLists& a);
  // ---- coordinator_resume.cpp
  void init_state();
  // The checkpoint's metadata as of now (next_round, counters, norms, sites, ...).
  nlohmann::json checkpoint_meta();
  CoordinatorStateView checkpoint_view();  // views of θ master, θ_pub and the momentum
  void save_checkpoint();  // synchronous (waits for a background write first)
  // Waits for the background checkpoint write, warning every 30 s; a write still running after
  // coordinator.checkpoint_timeout_s ends the process with kExitCheckpointStalled (a thread
  // stuck in the kernel cannot be cancelled; the previous checkpoint and the round journal
  // keep every published round for the restart).
  void await_checkpoint();
  // Applies a checkpoint's (or journal record's) metadata: rounds, counters, norms, sites.
  void restore_meta(const nlohmann::json& m);
  // Redoes the round whose journal record is there for next_round (see round_journal.h).
  void replay_journal();
  void recover_metrics_line();
  void set_published(std::vector<float> theta);  // also refreshes hash and norm
  // ---- coordinator_handlers.cpp
  void handle(ChannelEvent& e);
  void on_hello(const std::shared_ptr<transport::Connection>& c, const transport::Message& m);
  // Takes the payload out of `m` when it holds a late upload for the next round.
  void on_upload(const std::string& site, transport::Message& m);
  // The upload's figures into the site's status report, utilisation included.
  void note_site_report(SiteEntry& s, const protocol::Upload& u, const transport::Message& m);
  void on_resync(const std::string& site, const transport::Message& m);
  void protocol_error(const std::shared_ptr<transport::Connection>& c, const std::string& site,
                      const std::string& what, const std::string& label);
  void send(const std::string& site, transport::Message m);
  // The same message to every welcomed site; returns the payload bytes sent in all.
  uint64_t broadcast(std::shared_ptr<const transport::Message> m);
  bool send_welcome(const std::string& site);
  void send_round_start(const std::string& site);
  // ---- round_lifecycle.cpp
  bool ready_to_open();
  void open_round();
  // Aggregates, steps and publishes the round; its metrics line waits in closed_line for
  // finish_round_line(), which evaluates θ (when due) after the next round was opened: the
  // sites train while the coordinator evaluates.
  void close_round();
  // The outer step of fragment f with Δ̄ (consumed: it holds u, then its decode), and θ_pub
  // += decode(encode(u)); returns the encoded update (the round result's payload).
  transport::Bytes apply_round_update(int f, std::span<float> mean, const transport::CodecOptions& o);
  void finish_round_line();
  // ---- status_snapshot.cpp
  void publish_snapshot();
};

}  // namespace longhaul::outer
