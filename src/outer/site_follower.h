// A `longhaul site` made of several processes (`--rank R --world-size W --rendezvous HOST:PORT`,
// README "Mixed-device and multi-process sites"). Rank 0 runs the SiteService — the only
// connection to the coordinator, the checkpoints the coordinator relies on, the uploads — and
// drives the other ranks through a FollowerLink; ranks > 0 run run_site_follower and never
// open a network connection to the coordinator.
//
// Protocol between rank 0 and the followers (the process group's store and collectives):
//   boundary k = 0, 1, ...: rank 0 posts "site/boundary/<k>" = a JSON header, either
//       {"round":r, "inner_steps":H, "checkpoint_after":C, "step":S, "model":{..}, "theta_hash":"<hex>"}
//         train a round: H steps, checkpointing after the C-th (C ≤ H: where rank 0 checkpoints,
//         at its upload; streaming trains H − C overlap steps after it)
//       {"stop":true, "reason":"..", "error":bool, "theta":bool, "theta_hash":"<hex>"}  the end
//     then, for a round (or a stop with "theta"), broadcasts θ (Trainer::broadcast_from_rank0).
//     At the first round a follower builds its model from "model" and posts "site/ready/<R>";
//     rank 0 waits for every follower's (at most site.follower_ready_timeout_s, default 10 min:
//     loading a large corpus may take longer than a collective's timeout) before that first
//     broadcast.
//     S is rank 0's optimizer step count. A follower resumes from its checkpoint at step S when
//     it has one (rank 0 and the followers checkpoint at the same steps; a follower may hold a
//     newer one when rank 0 died between the two writes), else from its newest; a follower at
//     another step fails rather than train out of lockstep. A follower stopped mid-round (rank 0
//     sent 0) saves nothing: like rank 0, it resumes from the last common checkpoint.
//   each of the H inner steps: rank 0 broadcasts a go flag (int64 on the group's comm device,
//     1 = run this step, 0 = stop now), then every rank runs the step; the DeviceGroup
//     all-reduces the gradients.
// A follower waits for the next header as long as rank 0's store answers (rank 0 may wait on
// the coordinator for minutes); when rank 0 dies, the store and every collective fail with a
// RankError naming rank 0 within --rank-timeout-ms.
// A follower writes <run_dir>/rank-<R>/: metrics.jsonl (one "round" line per round with the θ
// it started from and its parameters' hash after training; one "stop" line) and checkpoints/.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "outer/site_config.h"

namespace longhaul::inner {
class SiteProcessGroup;
class Trainer;
}  // namespace longhaul::inner

namespace longhaul::outer {

// Rank 0's end of the protocol above. `pg` must outlive it.
class FollowerLink {
 public:
  // `ready_timeout`: the first round's wait for every follower to build its model (> 0).
  FollowerLink(inner::SiteProcessGroup& pg, std::chrono::duration<double> ready_timeout);
  inner::SiteProcessGroup& group() { return pg_; }

  // Round boundary: `trainer`'s model holds θ (hash `theta_hash`). Posts the header and
  // broadcasts θ. `model`: the coordinator's model JSON (the followers build the same GPT).
  // The followers checkpoint after `checkpoint_after` (≤ inner_steps) of the round's steps.
  void start_round(int64_t round, int64_t inner_steps, int64_t checkpoint_after, const nlohmann::json& model,
                   uint64_t theta_hash, inner::Trainer& trainer);
  // Before each inner step: tells the followers whether to run it; returns `go`. After a
  // false the followers have left and finish() does nothing.
  bool step_gate(bool go);
  // The end (once; later calls do nothing). With `trainer` (its model holding the final θ of
  // hash `theta_hash`) the followers take that θ before they exit. `error`: they exit failing.
  void finish(const std::string& reason, bool error, inner::Trainer* trainer = nullptr,
              uint64_t theta_hash = 0);

 private:
  void post(const nlohmann::json& header);
  inner::SiteProcessGroup& pg_;
  std::chrono::duration<double> ready_timeout_;
  int64_t boundary_ = 0;
  bool finished_ = false;
  bool ready_ = false;  // every follower has built its model (waited for at the first round)
};

// A rank > 0 of a multi-process site: follows rank 0 until it says stop. Returns 0 when rank 0
// ended the run or stopped (or on request_follower_stop while waiting); throws RankError when
// rank 0 failed or died, UserError when this rank cannot follow (model or step mismatch).
int run_site_follower(const SiteConfig& cfg, const std::filesystem::path& run_dir,
                      inner::SiteProcessGroup& pg);
// Signal-safe: the follower leaves at its next boundary or step (the site then fails on rank 0).
void request_follower_stop();

}  // namespace longhaul::outer
