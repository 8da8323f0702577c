// The site's training checkpoint: everything needed to continue a run bitwise (on CPU).
//
// File layout (little-endian), in the spirit of llm.c's versioned headers (version 2):
//   offset 0   char[8]  magic "LHCKPT\0\1"
//          8   uint32   format version (kCheckpointVersion)
//         12   uint32   reserved (0)
//         16   uint64   M = length of the JSON meta block
//         24   uint64   reserved (0; version 1 kept P here)
//         32   M bytes  JSON meta: {"step", "tokens", "train_seconds", "sampler": {"seed","draws"},
//                       "model": GptConfig, "manifest_hash", "extra": {...},
//                       "optimizer_shard": null | ShardLayout JSON (ZeRO-1: which 1/W of the
//                       parameters this file's AdamW state covers; inner/sharded_optimizer.h)}
//     32 + M   P bytes  LibTorch archive (zip): "model" (parameters by nanoGPT
//                       name), "optimizer" (AdamW param groups + per-parameter step,
//                       exp_avg, exp_avg_sq), "rng_cpu" (torch's default CPU generator state).
//   end - 24   trailer  uint64 P, uint64 XXH3-64 of the payload (checked on every read),
//                       char[8] "LHCKEND\0".
// The payload is streamed to the file and from it (never a whole copy in memory: a site's
// peak RSS must not grow by the checkpoint's size); the trailer is what makes that possible
// without seeking back. Version 1 files (P at offset 24, "payload_xxh3" in the meta) still load.
// Written with AtomicFileWriter (temp file, fsync, rename): a crash leaves the previous file.
// Files live in <run_dir>/checkpoints/step-<8 digits>.ckpt; the newest is the one to resume.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <optional>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "inner/batch_sampler.h"
#include "inner/gpt_config.h"

namespace longhaul::inner {

inline constexpr uint32_t kCheckpointVersion = 2;

struct CheckpointMeta {
  int64_t step = 0;            // optimizer steps done
  int64_t tokens = 0;          // training tokens consumed
  double train_seconds = 0;    // seconds spent in training steps so far
  SamplerState sampler;        // data cursor
  GptConfig model;             // architecture (must match on load)
  uint64_t manifest_hash = 0;  // of the parameter manifest (must match on load)
  nlohmann::json extra = nlohmann::json::object();  // room to grow (site/round state)
  nlohmann::json optimizer_shard;  // null: AdamW over every parameter; else a ShardLayout
};

// Named CPU tensors stored beside model and optimizer in the same file (archive key
// "blob.<name>"), so a caller's own state is written atomically with them (the site: its
// error-feedback residual and its pending upload).
using CheckpointBlobs = std::map<std::string, torch::Tensor>;

void write_checkpoint(const std::filesystem::path& path, const CheckpointMeta& meta,
                      torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                      const CheckpointBlobs& blobs = {});

// Reads only the header and meta (DataError naming the file on a bad magic, version or size).
CheckpointMeta read_checkpoint_meta(const std::filesystem::path& path);

// Restores model parameters, optimizer state and torch's CPU generator into the given
// (already constructed, same architecture) objects, on `device`. Returns the meta.
// DataError when the file is damaged, written for another architecture, or its optimizer
// state has another shard layout than `expected_shard` (null = unsharded).
CheckpointMeta read_checkpoint(const std::filesystem::path& path, torch::nn::Module& model,
                               torch::optim::Optimizer& optimizer, const GptConfig& expected,
                               const torch::Device& device,
                               const nlohmann::json& expected_shard = nullptr,
                               CheckpointBlobs* blobs = nullptr);
// `blobs` (if given): each key asked for gets its tensor (on the CPU), or an undefined tensor
// when the file has none of that name (a file written before the caller stored it).

std::filesystem::path checkpoint_path(const std::filesystem::path& run_dir, int64_t step);
// The checkpoint with the highest step in <run_dir>/checkpoints, if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir);
// Deletes all but the `keep` newest checkpoints.
void prune_checkpoints(const std::filesystem::path& run_dir, int64_t keep);

}  // namespace longhaul::inner
