// Everything `longhaul coordinator` reads from its TOML file (configs/coordinator.toml
// documents every key with its default and unit):
//   [coordinator] run_id, rounds, seed, bind, port, allowed_sites, allowed_operators,
//                 dashboard_bind, start_sites, max_message_mb, spool_min_bytes, report_memcpy,
//                 max_connections(_per_identity),
//                 join_timeout_s, max_tokens_per_step,
//                 full_theta_per_window, full_theta_window_s
//   [tls]         ca_cert, cert, key
//   [model]       the GPT architecture every site builds (inner::read_model_config)
//   [outer]       optimizer, lr, momentum, warmup_rounds, max_update_norm, max_update_theta_ratio,
//                 aggregation, weighting, trim, max_norm_ratio, max_update_ratio
//   [sync]        live-tunable: inner_steps, min_sites, round_deadline_s, *_encoding, zstd_level,
//                 balance, min_inner_steps, ...; fixed for the run: fragments, overlap_steps,
//                 merge_alpha (StreamingConfig)
//   [data]        corpus for the held-out evaluation of θ (inner::read_data_config)
//   [eval]        every_rounds, batches, batch_size
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "inner/corpus.h"
#include "inner/gpt_config.h"
#include "outer/aggregator.h"
#include "outer/outer_optimizer.h"
#include "outer/sync_policy.h"
#include "transport/tls_context.h"

namespace longhaul::outer {

// The outer step's stabilisers when the file does not set them (docs/benchmarks.md, "A stable
// outer step"). outer.max_update_theta_ratio: ‖Δ̄‖ ≤ ρ·‖θ‖ before the step (a ratio: carries
// over between sizes); over 3 seeds the largest round-over-round rise of the eval loss was
// 0.0/4.8/0.1% (16.5/27.0/2.3% without) and the final loss 4-11% lower.
inline constexpr double kDefaultMaxUpdateThetaRatio = 0.035;
// outer.warmup_rounds: off. A warmup removed the last rises in that benchmark but overshot
// right after it ended in the demo's short run (momentum built at low lr, released at full lr).
inline constexpr int64_t kDefaultOuterWarmupRounds = 0;

struct EvalConfig {
  int64_t every_rounds = 1;  // evaluate θ every N rounds (and after the last); 0 = only the last
  int64_t batches = 4;       // batches of the fixed validation set
  int64_t batch_size = 8;    // sequences per evaluation batch
};

// Streaming DiLoCo (issue #11): keys of [sync] fixed for the whole run (every site's schedule
// and the checkpoint depend on them; a live edit is ignored with a warning).
struct StreamingConfig {
  int fragments = 1;           // sync.fragments = P: 1 = one exchange of all of θ per round
  int64_t overlap_steps = 0;   // sync.overlap_steps = τ: inner steps a site trains while a
                               // fragment is in flight (0 = blocking); < the smallest gap
                               // between two exchanges, floor(H/P) or a little more
  double merge_alpha = 0.5;    // sync.merge_alpha = α in [0, 1): local ← α·local + (1−α)·global
                               // for an overlapped fragment (unused when τ = 0)
  bool streaming() const { return fragments > 1 || overlap_steps > 0; }
};

struct CoordinatorConfig {
  std::string run_id;                  // empty: generated at first start (kept in the checkpoint)
  int64_t rounds = 20;                 // outer rounds of the run; the coordinator exits 0 after
  double linger_s = 60;                // after the last round: seconds to keep answering sites that
                                       // reconnect late with run_complete (ends early once all know)
  int64_t seed = 1337;                 // seeds the initial θ
  std::string bind = "127.0.0.1";      // listen address
  int64_t port = 7443;                 // TCP port (WebSocket + HTTPS); 0 = ephemeral
  std::vector<std::string> allowed_sites;  // certificate CNs allowed to join; empty = any CA-signed
  std::vector<std::string> allowed_operators;  // operator-role CNs allowed to read HTTPS routes; empty = any
  // Optional plain-HTTP, read-only listener for SSH tunnels ("127.0.0.1:8080"); "" = off.
  // Loopback addresses only (refused otherwise at config time): it has no authentication.
  std::string dashboard_bind;
  std::string dashboard_address;       // dashboard_bind's IP ("" = off)
  int64_t dashboard_port = 0;          // dashboard_bind's port (0 = ephemeral, see <run_dir>/dashboard_port)
  int64_t start_sites = 0;             // sites to wait for before round 0; 0 = sync.min_sites
  double start_timeout_s = 600;        // after this, start round 0 with whoever (>= min_sites) is there
  int64_t max_message_mb = 1024;       // cap on one WebSocket message (MiB)
  // Payloads at least this large (bytes) wait on disk, in unnamed files under <run_dir>/spool,
  // from their arrival until the event thread handles them: memory K × 256 KiB, not K × payload.
  int64_t spool_min_bytes = 1 << 20;
  // Time one memcpy of θ (4N bytes) after each round and write it as memcpy_s on the round
  // line: the yardstick of tail_s (scripts/bench-scale). Costs that memcpy once per round.
  bool report_memcpy = false;
  // The longest a round's close (or the run's end) waits for the previous round's background
  // checkpoint write, seconds; warned every 30 s; past it the coordinator exits with
  // kExitCheckpointStalled (coordinator.h).
  double checkpoint_timeout_s = 1800;
  int64_t max_connections = 256;       // open connections in all (WebSockets + HTTPS sessions)
  int64_t max_connections_per_identity = 8;  // ... per certificate identity (site or operator)
  transport::TlsFiles tls;
  inner::GptConfig model;
  OuterOptimConfig outer;
  AggregatorOptions aggregation;       // [outer] aggregation, weighting, trim, max_norm_ratio, max_update_ratio
  int64_t max_tokens_per_step = int64_t{1} << 22;  // cap on a site's declared batch x accum x block (tokens)
  int64_t full_theta_per_window = 6;   // joins/resyncs (each sends a full θ) allowed per site per window
  int64_t full_theta_window_s = 60;    // that window, seconds
  SyncPolicy sync;
  StreamingConfig streaming;           // sync.fragments, sync.overlap_steps, sync.merge_alpha
  inner::CorpusSpec data;              // held-out evaluation data (validation split)
  EvalConfig eval;
  std::string effective_toml;          // for <run_dir>/coordinator.toml
};

// Parses and validates the whole file (ConfigError names file, key, value, expectation) and
// rejects unknown keys.
CoordinatorConfig read_coordinator_config(const std::filesystem::path& path,
                                          const std::vector<std::string>& overrides);

// Keys outside [sync] whose values differ between two effective configs, e.g.
// {"outer.lr", "model.n_layer"}; these cannot change mid-run.
std::vector<std::string> fixed_keys_changed(const std::string& old_effective_toml,
                                            const std::string& new_effective_toml);

}  // namespace longhaul::outer
