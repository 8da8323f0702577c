// The site's inner training loop: a GPT, its AdamW optimizer and a batch sampler over one
// corpus shard. One optimizer step reads top to bottom:
//   lr <- schedule(step); for each micro-batch: batch, forward, backward (loss / grad_accum);
//   clip the global gradient norm; AdamW step.
// Reusable beyond `longhaul train`: a DiLoCo site sets the parameters from the coordinator,
// calls train_steps(H), reads the parameters back, and keeps the AdamW state across rounds;
// save_checkpoint/load_checkpoint carry everything (model, AdamW, step, data cursor, RNG).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>

#include <torch/torch.h>

#include "inner/batch_sampler.h"
#include "inner/checkpoint.h"
#include "inner/corpus.h"
#include "inner/gpt.h"
#include "inner/train_config.h"

namespace longhaul::inner {

class DeviceGroup;
class ShardedAdamW;
class SiteProcessGroup;

struct StepResult {
  int64_t step = 0;       // optimizer steps done after this one (1-based index of this step)
  double loss = 0;        // mean training loss over the step's micro-batches (nats/token)
  double lr = 0;          // learning rate this step used
  double grad_norm = 0;   // global L2 gradient norm before clipping
  int64_t tokens = 0;     // training tokens consumed so far (whole run)
  double seconds = 0;     // wall time of this step
  double data_seconds = 0;  // of which in the batch sampler (Longhaul's code, not LibTorch's)
  nlohmann::json devices;   // several devices/ranks: the split and rates (to_json(GroupStepStats)); else null
};

struct TrainStats {
  int64_t steps = 0;      // optimizer steps run by this call
  int64_t tokens = 0;     // tokens trained by this call (the DiLoCo merge weight)
  double mean_loss = 0;   // mean of the steps' losses
  double last_loss = 0;
  double seconds = 0;
};

class Trainer {
 public:
  // Seeds torch with cfg.train.seed, builds the model on cfg.train.device, the AdamW optimizer
  // and a sampler over corpus->train; sets torch's intra-op threads when cfg.train.threads > 0.
  // With cfg.train.devices or a process group `pg` (which must outlive the trainer), each step
  // runs through a DeviceGroup: the step's batch_size x grad_accum sequences are split across
  // the devices (and ranks) by measured throughput; see inner/device_group.h. With a process
  // group and cfg.train.shard_optimizer, each rank keeps 1/W of the AdamW state (ZeRO-1).
  Trainer(const TrainConfig& cfg, std::shared_ptr<const Corpus> corpus, SiteProcessGroup* pg = nullptr);
  ~Trainer();

  // One optimizer step over grad_accum micro-batches.
  StepResult step();
  // n optimizer steps; on_step (optional) sees each result (for logging).
  TrainStats train_steps(int64_t n, const std::function<void(const StepResult&)>& on_step = {});
  // Mean loss over the fixed validation set: eval_batches batches of batch_size windows at
  // evenly spaced offsets of the validation stream (evenly_spaced_offsets), the same windows
  // every call; no gradients, dropout off, the sampler untouched.
  double evaluate();

  // `extra` and `blobs`: the caller's own state, in the same atomically written file.
  void save_checkpoint(const std::filesystem::path& path,
                       const nlohmann::json& extra = nlohmann::json::object(), const CheckpointBlobs& blobs = {});
  // Returns the checkpoint's meta (its `extra` for the caller's own state); `blobs` as in
  // read_checkpoint.
  CheckpointMeta load_checkpoint(const std::filesystem::path& path, CheckpointBlobs* blobs = nullptr);

  Gpt& model() { return model_; }
  // The AdamW this rank steps: over all parameters, or over this rank's shard of them
  // (train.shard_optimizer with a process group; see inner/sharded_optimizer.h).
  torch::optim::AdamW& optimizer();
  // Null unless the optimizer state is sharded over the process group's ranks.
  ShardedAdamW* sharded_optimizer() { return sharded_.get(); }
  // Bytes of AdamW moment state this rank holds (exp_avg + exp_avg_sq).
  int64_t optimizer_state_bytes();
  // Frees the gradients (set to none) until the next step: a site calls it after a round's
  // inner steps so that the round's Δ and encode do not sit beside 4N bytes of stale grads.
  void release_gradients();
  const TrainConfig& config() const { return cfg_; }
  const torch::Device& device() const { return device_; }
  int64_t steps_done() const { return step_; }
  // DiLoCo sites: the lr schedule follows the run's progress, not this trainer's own step count.
  // The next step uses lr_at_position(position), each later one `stride` steps further
  // (outer/site_service.cpp: position = the run's reference inner steps so far, stride =
  // H / H_k). Not checkpointed: set again at every round. schedule_position() < 0: not set.
  void follow_schedule(double position, double stride);
  double schedule_position() const { return sched_pos_; }
  double schedule_stride() const { return sched_stride_; }
  int64_t tokens_trained() const { return tokens_; }
  double train_seconds() const { return train_seconds_; }
  int64_t tokens_per_step() const { return cfg_.train.tokens_per_step(cfg_.model.block_size); }
  // Null with one device and no process group.
  DeviceGroup* device_group() { return group_.get(); }
  // Start of a multi-process run / round boundary: every rank (and replica) takes rank 0's
  // parameters. A no-op without a process group beyond syncing local replicas.
  void broadcast_from_rank0();

 private:
  // One micro-batch: x, y [B, T] -> forward (autocast on CUDA when enabled) -> loss ->
  // backward of loss * scale (gradients accumulate). Returns the unscaled loss, detached.
  torch::Tensor forward_backward(const Batch& batch, double scale);

  TrainConfig cfg_;
  std::shared_ptr<const Corpus> corpus_;
  torch::Device device_;
  Gpt model_{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer_;  // null when sharded_ is set
  BatchSampler sampler_;
  int64_t step_ = 0;
  double sched_pos_ = -1, sched_stride_ = 1;  // follow_schedule (-1: own step count)
  int64_t tokens_ = 0;
  double train_seconds_ = 0;
  std::unique_ptr<DeviceGroup> group_;
  std::unique_ptr<ShardedAdamW> sharded_;
};

}  // namespace longhaul::inner
