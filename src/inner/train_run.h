// A whole single-site training run in its run directory (what `longhaul train` does):
//   <run_dir>/config.effective.toml   every key the run read, defaults included
//   <run_dir>/metrics.jsonl           step and eval lines (metrics_writer.h)
//   <run_dir>/checkpoints/step-N.ckpt every train.checkpoint_every steps and at the end
//   <run_dir>/model.safetensors, model.json   the exported model (at the end)
// Schedule after optimizer step s (1-based) of S = train.steps:
//   metrics line   when s % log_every == 0 or s == S
//   evaluation     when eval_every > 0 and s % eval_every == 0, and always at s == S
//   checkpoint     when checkpoint_every > 0 and s % checkpoint_every == 0, and always at s == S
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "inner/process_group.h"
#include "inner/train_config.h"

namespace longhaul::inner {

struct RunOptions {
  std::filesystem::path run_dir;
  bool resume = false;          // continue from the newest checkpoint in run_dir
  std::string effective_toml;   // written to config.effective.toml
  // A multi-process site (--rank/--world-size/--rendezvous): world_size > 1 joins the ranks
  // (inner/process_group.h). Rank R > 0 writes its run dir under <run_dir>/rank-R.
  ProcessGroupOptions group;
};

struct RunSummary {
  int64_t steps = 0;         // steps done at the end (whole run)
  int64_t resumed_from = 0;  // step of the checkpoint resumed from (0: fresh start)
  double last_loss = 0;      // training loss of the last step run by this process
  double val_loss = 0;       // final evaluation
};

// Throws UserError (DataError/ConfigError) for bad input: a run dir that already holds
// checkpoints without `resume`, corpus problems, a checkpoint of another architecture.
RunSummary run_training(const TrainConfig& cfg, const RunOptions& opts);

}  // namespace longhaul::inner
