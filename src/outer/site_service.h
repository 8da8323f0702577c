// `longhaul site`: one data center's side of DiLoCo.
//
//   connect (mutual TLS, reconnect with exponential backoff) -> hello -> welcome (model, θ_r)
//   round_start r: θ ← θ_r; H inner AdamW steps on the local shard (Trainer); Δ = θ_r − θ;
//                  upload Q(Δ + e) with e ← (Δ + e) − deQ(...) (error feedback), w = tokens
//   round_result r: θ_{r+1} = θ_r + deQ(update); check the published hash; on mismatch ask
//                   for a full resync (logged and counted)
//   run_complete: checkpoint, exit 0
//
// The model, AdamW state, data cursor, error-feedback residual, last round and the upload still
// pending are ONE checkpoint file in the run dir (checkpoints/, atomically written after every
// upload), so a restarted site rejoins, re-sends a pending upload under its idempotency key
// (never trains its round again) and continues. (residual.bin of older versions is still read.) SIGINT/SIGTERM: the current inner step finishes,
// the round is abandoned, the connection closed, exit 0.
#pragma once

#include <filesystem>
#include <memory>

#include "outer/site_config.h"

namespace longhaul::outer {

class FollowerLink;

class SiteService {
 public:
  // `followers` (rank 0 of a multi-process site, site_follower.h; must outlive this): the
  // trainer joins their process group, each round's θ and steps are sent to them, and they
  // are told to stop when run() returns.
  SiteService(SiteConfig cfg, std::filesystem::path run_dir, FollowerLink* followers = nullptr);
  ~SiteService();
  int run();
  static void request_stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longhaul::outer
