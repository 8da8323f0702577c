// The configuration of a single-site training run (`longhaul train`), read from TOML with
// every key validated (configs/train-local.toml documents each key, its default and unit):
//   [model]  n_layer, n_head, n_embd, block_size, vocab_size, dropout, bias     -> GptConfig
//   [data]   path, format, val_fraction, shard_index, num_shards                -> CorpusSpec
//   [optim]  lr, min_lr, beta1, beta2, eps, weight_decay, warmup_steps, decay_steps, grad_clip
//   [train]  steps, batch_size, grad_accum, seed, device, bf16_autocast, threads,
//            log_every, eval_every, eval_batches, checkpoint_every, keep_checkpoints, run_dir,
//            devices, verify_every, process_group_backend,
//            shard_optimizer
// The sections are read by separate functions so that other roles (the site) can reuse them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "common/config_reader.h"
#include "inner/corpus.h"
#include "inner/device_spec.h"
#include "inner/gpt_config.h"
#include "inner/inner_optimizer.h"

namespace longhaul::inner {

// The loop's own settings (section [train]).
struct LoopConfig {
  int64_t steps = 2000;          // optimizer steps of the whole run
  int64_t batch_size = 16;       // sequences per micro-batch
  int64_t grad_accum = 1;        // micro-batches per optimizer step
  int64_t seed = 1337;           // seeds model init, dropout and the batch sampler
  std::string device = "cpu";    // "cpu" | "cuda" | "cuda:N"
  bool bf16_autocast = true;     // CUDA only: forward in bfloat16 autocast
  int64_t threads = 0;           // torch intra-op threads; 0 = LibTorch's default (all cores)
  int64_t log_every = 10;        // steps between metrics lines
  int64_t eval_every = 200;      // steps between evaluations; 0 = only at the end
  int64_t eval_batches = 8;      // batches of batch_size windows in the fixed validation set
  int64_t checkpoint_every = 500;  // steps between checkpoints; 0 = only at the end
  int64_t keep_checkpoints = 2;  // newest checkpoints kept in the run dir
  std::filesystem::path run_dir = "runs/train";  // default run dir (relative to the cwd)
  // Several devices (inner/device_group.h): empty = the one `device`. devices[0] is the primary.
  std::vector<DeviceSpec> devices;
  int64_t verify_every = 100;    // steps between replica hash checks (several devices/ranks); 0 = never
  // A multi-process site's c10d backend (inner/backend_choice.h): "auto" | "gloo" | "nccl".
  std::string process_group_backend = "auto";
  // ZeRO-1 in a multi-process site: each rank keeps 1/W of the AdamW state (gradients
  // reduce-scattered, parameters all-gathered; inner/sharded_optimizer.h). No effect alone.
  bool shard_optimizer = false;

  int64_t tokens_per_step(int64_t block_size) const { return batch_size * grad_accum * block_size; }
  // This process's devices: `devices`' names, or the one `device`; [0] is the primary.
  std::vector<std::string> device_names() const;
};

struct TrainConfig {
  GptConfig model;
  CorpusSpec data;  // block_size/vocab_size copied from model
  InnerOptimConfig optim;
  LoopConfig train;
};

GptConfig read_model_config(ConfigReader& r);
CorpusSpec read_data_config(ConfigReader& r, const GptConfig& model);
// `total_steps` is the default of optim.decay_steps (decay over the whole run).
InnerOptimConfig read_optim_config(ConfigReader& r, int64_t total_steps);
LoopConfig read_loop_config(ConfigReader& r);

// Reads all sections and calls r.finish() (unknown keys are errors).
TrainConfig read_train_config(ConfigReader& r);

}  // namespace longhaul::inner
