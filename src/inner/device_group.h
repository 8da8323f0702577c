// Heterogeneous data parallelism inside a site: one model replica per device (any mix of CPU
// workers and CUDA devices), optionally across the processes of a SiteProcessGroup.
//
// One inner step, top to bottom (compute_gradients + after_optimizer_step):
//   1. split   the site batch of B sequences: across ranks by their measured rates (shared
//              every `rebalance_every` steps), then this rank's share across its devices by
//              theirs (ThroughputBalancer) — rows [offset, offset + n_i) go to device i.
//   2. compute each device, on its own thread, runs its n_i sequences in ceil(n_i / cap_i)
//              micro-batches; micro-batch m of size b contributes (b / B) · ∇ mean-loss(m),
//              so the replicas' gradients sum to the full-batch gradient ∇ mean-loss(B).
//   3. combine primary.grad = Σ_i replica_i.grad (fixed device order), then all-reduce (sum)
//              over ranks — the weighting by sequences is already in the (b / B) scale.
//   4. step    the caller runs ONE optimizer step on the primary (devices[0]).
//   5. sync    every replica copies the primary's parameters; every `verify_every` steps the
//              replicas' hashes (and each rank's) are compared and any that differ are
//              resynced from the primary (rank 0 across ranks), with a warning.
// Requirements: every rank passes the SAME site batch (same sampler and seed) — a rank only
// reads its rows; the loss is a per-sequence mean of equal-length sequences (so the weighted
// sum is exactly the full-batch mean); dropout off if bitwise agreement with one device matters.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <torch/torch.h>

#include "inner/device_spec.h"
#include "inner/throughput_balancer.h"

namespace longhaul::inner {

class SiteProcessGroup;
class DeviceWorker;

// A fresh model of the same architecture, on CPU (its initial values do not matter).
using ReplicaFactory = std::function<std::shared_ptr<torch::nn::Module>()>;
// One micro-batch on `replica` (x, y [b, T] int64 on the replica's device): accumulates
// scale · ∇(mean loss of the micro-batch) into the replica's .grad and returns the unscaled
// mean loss. Runs on the device's worker thread (set autocast etc. inside).
using MicroStepFn = std::function<double(torch::nn::Module& replica, const torch::Tensor& x,
                                         const torch::Tensor& y, double scale)>;
// The usual MicroStepFn: (scale · loss(replica, x, y)).backward().
using LossFn = std::function<torch::Tensor(torch::nn::Module& replica, const torch::Tensor& x,
                                           const torch::Tensor& y)>;
MicroStepFn micro_step_from_loss(LossFn loss);

struct DeviceGroupOptions {
  std::vector<DeviceSpec> devices{DeviceSpec{}};
  BalancerOptions balance{};
  int64_t rebalance_every = 1;  // steps between cross-rank rate exchanges, >= 1
  int64_t verify_every = 1;     // steps between replica hash checks; 0 = never
  bool proportional = true;     // false: equal split regardless of rates (benchmark baseline)
  // false: step 3 sums the local replicas only and all-reduces just the loss; the caller
  // reduces the gradients itself (ZeRO-1's reduce-scatter, inner/sharded_optimizer.h).
  bool reduce_gradients = true;
};

struct DeviceShare {
  std::string label;        // device_label()
  int64_t sequences = 0;    // rows of the site batch this device processed
  int64_t micro_batches = 0;
  double seconds = 0.0;     // wall time of its share, emulated slowdown included
  double rate = 0.0;        // moving-average sequences/s after this step
};

struct GroupStepStats {
  int64_t step = 0;                    // 1-based count of compute_gradients calls
  double loss = 0.0;                   // mean loss over the whole site batch (all ranks)
  int64_t site_sequences = 0;          // B
  int64_t rank_offset = 0;             // this rank's first row
  std::vector<int64_t> rank_split;     // sequences per rank (size world_size)
  std::vector<DeviceShare> devices;    // this rank's devices
  double compute_seconds = 0.0;        // slowest device of this rank
  double combine_seconds = 0.0;        // gradient sum + all-reduce
};
// {"split":[..],"rates":[..],"devices":[..],"rank_split":[..]} for the JSONL metrics.
nlohmann::json to_json(const GroupStepStats& stats);

class DeviceGroup {
 public:
  // `primary` is the model the optimizer owns; it is moved to devices[0] (construct the group
  // before the first optimizer step). `pg` may be null (one process); it must outlive this.
  DeviceGroup(std::shared_ptr<torch::nn::Module> primary, ReplicaFactory factory,
              MicroStepFn micro_step, DeviceGroupOptions options, SiteProcessGroup* pg = nullptr);
  ~DeviceGroup();
  DeviceGroup(const DeviceGroup&) = delete;
  DeviceGroup& operator=(const DeviceGroup&) = delete;

  // Steps 1-3 above. inputs/targets: the whole site batch [B, T] int64 on CPU. On return the
  // primary's .grad holds the full-batch gradient.
  GroupStepStats compute_gradients(const torch::Tensor& inputs, const torch::Tensor& targets);
  // Step 5: call after the optimizer step.
  void after_optimizer_step();
  // compute_gradients, optional global-norm clip (0 = off), optimizer.step(), sync.
  GroupStepStats train_step(const torch::Tensor& inputs, const torch::Tensor& targets,
                            torch::optim::Optimizer& optimizer, double grad_clip = 0.0);

  // Copies the primary's parameters and buffers into every replica.
  void sync_replicas();
  // Compares every replica (and every rank's primary) with the primary (rank 0's); resyncs
  // those that differ. Returns how many were resynced (local replicas + ranks).
  int64_t verify_replicas();
  // Round boundary: every rank's primary and replicas take rank 0's parameters.
  void broadcast_from_rank0();

  size_t size() const { return replicas_.size(); }
  torch::nn::Module& replica(size_t i) { return *replicas_.at(i); }
  const std::vector<DeviceSpec>& specs() const { return options_.devices; }
  const ThroughputBalancer& balancer() const { return device_balancer_; }
  // Hash of the parameters of replica i (0 = the primary); equal hashes <=> equal bits.
  uint64_t replica_hash(size_t i) const;

 private:
  std::vector<int64_t> rank_split(int64_t batch);
  void run_devices(const torch::Tensor& inputs, const torch::Tensor& targets, int64_t offset,
                   const std::vector<int64_t>& split, int64_t batch, GroupStepStats& stats,
                   std::vector<double>& loss_sums);
  double combine(const std::vector<int64_t>& split, const std::vector<double>& loss_sums);

  std::shared_ptr<torch::nn::Module> primary_;
  MicroStepFn micro_step_;
  DeviceGroupOptions options_;
  SiteProcessGroup* pg_;
  std::vector<torch::Device> devices_;
  std::vector<std::shared_ptr<torch::nn::Module>> replicas_;  // [0] is primary_
  std::vector<std::unique_ptr<DeviceWorker>> workers_;
  ThroughputBalancer device_balancer_;
  // Emulated slowdown: the least compute seconds per sequence seen on each device so far (0:
  // none yet). The pace is set from it, not from the step just done: on a VM a step after a
  // long sleep can cost several times its usual CPU, and pacing on that would compound.
  std::vector<double> min_compute_per_seq_;
  ThroughputBalancer rank_balancer_;
  ThroughputBalancer rank_rate_;  // one worker: this rank's moving-average sequences/s
  std::vector<int64_t> last_rank_split_;
  std::vector<int64_t> last_split_;
  int64_t step_ = 0;
};

}  // namespace longhaul::inner
