// The coordinator's live-tunable sync policy: section [sync] of coordinator.toml. These keys
// (and only these) may change while a run is going: the config watcher re-reads them when the
// file changes or on SIGHUP, logs the change and applies it from the next round.
#pragma once

#include <cstdint>
#include <string>

#include "common/config_reader.h"

namespace longhaul::outer {

struct SyncPolicy {
  int64_t inner_steps = 50;          // H: inner AdamW steps per round (the fastest site's, equal_time)
  // "equal_steps": every site runs H. "equal_time": each site H_k from its measured step rate
  // so that all finish together (inner_steps_plan.h), clamped to [min_inner_steps, H].
  std::string balance = "equal_steps";
  int64_t min_inner_steps = 1;       // lower clamp of H_k under equal_time (and of auto H)
  // sync.inner_steps = "auto": the coordinator picks H each round (inner_steps_plan.h,
  // choose_auto_inner_steps) so that communication is at most target_comm_fraction of a
  // round, within [min_inner_steps, max_inner_steps]; inner_steps then holds the round's choice.
  bool auto_inner_steps = false;
  double target_comm_fraction = 0.05;  // (0, 1)
  int64_t max_inner_steps = 1000;      // upper clamp of auto H
  // equal_time: a round closes (quorum given) once (1 + straggler_margin) x the expected time
  // of its slowest member has passed (inner_steps_plan.h, expected_round_s), or at the
  // deadline, whichever is first; a later upload counts in the next round (outer.stale_weight).
  double straggler_margin = 0.5;
  int64_t min_sites = 2;             // quorum: accepted uploads needed to close at the deadline
  double round_deadline_s = 600;     // seconds from round start after which a quorum closes it
  std::string upload_encoding = "int8";    // sites -> coordinator: fp32|bf16|fp16|int8|int4
  std::string download_encoding = "fp32";  // coordinator -> sites (published update)
  // Lossless stage on uploads and round results: 0 = off, 1..22 = byte shuffle + zstd at this
  // level (a chunk stays compressed only where that saves; see docs/benchmarks.md "zstd on the
  // wire" for the measured saving and cost that chose the default).
  int64_t zstd_level = 0;

  bool operator==(const SyncPolicy&) const = default;
};

// Reads [sync]; ConfigError names the key on a bad value.
SyncPolicy read_sync_policy(ConfigReader& r);
// "inner_steps 50 -> 20, min_sites 2 -> 3" (empty when equal).
std::string describe_change(const SyncPolicy& from, const SyncPolicy& to);

}  // namespace longhaul::outer
