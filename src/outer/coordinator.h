// `longhaul coordinator`: owns θ, the outer optimizer, the round number and the sync policy;
// authenticates sites (mutual TLS, certificate CN = site id, optional allow-list), runs
// DiLoCo rounds (round_state.h), aggregates uploads as they arrive (aggregator.h), publishes
// each update so every replica is bitwise identical, checkpoints after every round
// (coordinator_checkpoint.h), evaluates θ on held-out data, re-reads [sync] live
// (config_watcher.h), and serves GET /healthz, /v1/status and /metrics on its one port.
//
// Run directory: coordinator.ckpt, coordinator.toml (effective config), metrics.jsonl (one
// {"event":"round",...} line per round), port (the bound TCP port, for scripts and tests).
//
// Threading: the channel's I/O threads only enqueue events; one thread (run()) owns all state
// and does decoding, the outer step, evaluation and checkpoints. HTTP handlers read a
// snapshot guarded by a mutex.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "outer/coordinator_config.h"

namespace longhaul::outer {

// Exit status of a coordinator whose background checkpoint write did not finish within
// coordinator.checkpoint_timeout_s (a stalled disk): restarting it on the same run dir resumes
// with no published round lost. (0: done or stopped; 1: fatal error; 2: configuration error.)
inline constexpr int kExitCheckpointStalled = 3;

class Coordinator {
 public:
  Coordinator(CoordinatorConfig cfg, std::filesystem::path config_path,
              std::vector<std::string> overrides, std::filesystem::path run_dir);
  ~Coordinator();

  // Runs until every round is done (returns 0) or stop is requested (SIGINT/SIGTERM via
  // request_stop(); returns 0 after the last checkpoint). A stalled checkpoint write ends the
  // process with kExitCheckpointStalled instead.
  int run();
  static void request_stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longhaul::outer
