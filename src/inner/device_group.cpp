#include "inner/device_group.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <sstream>
#include <unordered_set>

#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "common/error.h"
#include "common/log.h"
#include "inner/device_worker.h"
#include "inner/flat_params.h"
#include "inner/process_group.h"
#include "inner/slowdown.h"

namespace longhaul::inner {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

torch::Device resolve_device(const DeviceSpec& spec, size_t index) {
  torch::Device d(spec.device);
  if (d.is_cpu()) return d;
  LH_CHECK(d.is_cuda(), "device ", spec.device);
  const int64_t index_n = d.has_index() ? d.index() : 0;
  if (!torch::cuda::is_available())
    throw UserError("devices[" + std::to_string(index) + "] = \"" + spec.device +
                    "\": LibTorch sees no CUDA GPU on this machine (use \"cpu\")");
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (index_n >= count)
    throw UserError("devices[" + std::to_string(index) + "] = \"" + spec.device + "\": only " +
                    std::to_string(count) + " CUDA device(s) visible");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index_n));
}

// Parameters in registration order, each distinct tensor once (tied weights count once).
std::vector<torch::Tensor> unique_parameters(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  std::unordered_set<const void*> seen;
  for (auto& p : m.parameters())
    if (seen.insert(p.unsafeGetTensorImpl()).second) out.push_back(p);
  return out;
}

std::string join(const std::vector<int64_t>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ":" : "") << v[i];
  return os.str();
}

}  // namespace

MicroStepFn micro_step_from_loss(LossFn loss) {
  return [loss = std::move(loss)](torch::nn::Module& replica, const torch::Tensor& x,
                                  const torch::Tensor& y, double scale) {
    torch::Tensor l = loss(replica, x, y);
    (l * scale).backward();
    return l.item<double>();
  };
}

nlohmann::json to_json(const GroupStepStats& s) {
  nlohmann::json split = nlohmann::json::array(), rates = nlohmann::json::array(),
                 labels = nlohmann::json::array();
  for (const auto& d : s.devices) {
    split.push_back(d.sequences);
    rates.push_back(d.rate);
    labels.push_back(d.label);
  }
  return {{"devices", labels}, {"split", split}, {"rates", rates}, {"rank_split", s.rank_split},
          {"rank_offset", s.rank_offset}, {"compute_s", s.compute_seconds},
          {"combine_s", s.combine_seconds}};
}

DeviceGroup::DeviceGroup(std::shared_ptr<torch::nn::Module> primary, ReplicaFactory factory,
                         MicroStepFn micro_step, DeviceGroupOptions options, SiteProcessGroup* pg)
    : primary_(std::move(primary)),
      micro_step_(std::move(micro_step)),
      options_(std::move(options)),
      pg_(pg),
      device_balancer_(static_cast<int64_t>(std::max<size_t>(options_.devices.size(), 1)), options_.balance),
      rank_balancer_(pg ? pg->world_size() : 1, options_.balance),
      rank_rate_(1, options_.balance) {
  LH_CHECK(primary_ != nullptr, "no primary model");
  LH_CHECK(!options_.devices.empty(), "no devices");
  min_compute_per_seq_.assign(options_.devices.size(), 0.0);
  LH_CHECK(options_.rebalance_every >= 1, "rebalance_every = ", options_.rebalance_every);
  LH_CHECK(options_.verify_every >= 0, "verify_every = ", options_.verify_every);
  for (size_t i = 0; i < options_.devices.size(); ++i)
    devices_.push_back(resolve_device(options_.devices[i], i));

  torch::NoGradGuard no_grad;
  primary_->to(devices_[0]);
  replicas_.push_back(primary_);
  const auto primary_params = unique_parameters(*primary_);
  for (size_t i = 1; i < devices_.size(); ++i) {
    LH_CHECK(factory != nullptr, "several devices need a replica factory");
    auto r = factory();
    LH_CHECK(r != nullptr, "replica factory returned null");
    r->to(devices_[i]);
    const auto params = unique_parameters(*r);
    LH_CHECK_EQ(params.size(), primary_params.size());
    for (size_t k = 0; k < params.size(); ++k)
      LH_CHECK(params[k].sizes() == primary_params[k].sizes(), "replica parameter ", k, " shape differs");
    replicas_.push_back(std::move(r));
  }
  sync_replicas();

  // One thread per device; CPU workers get their own intra-op thread count. at::set_num_threads
  // also updates a process-wide default, so restore the caller's afterwards.
  const int caller_threads = at::get_num_threads();
  for (size_t i = 0; i < devices_.size(); ++i) {
    const bool cpu = devices_[i].is_cpu();
    const int threads = options_.devices[i].threads;
    workers_.push_back(std::make_unique<DeviceWorker>([cpu, threads] {
      at::internal::lazy_init_num_threads();
      if (cpu) at::set_num_threads(threads);
    }));
  }
  at::set_num_threads(caller_threads);
  std::ostringstream os;
  for (size_t i = 0; i < devices_.size(); ++i)
    os << (i ? ", " : "") << device_label(options_.devices[i], i);
  LH_LOG(Info, "devices") << devices_.size() << " device(s): " << os.str()
                          << (pg_ ? " (rank " + std::to_string(pg_->rank()) + " of " +
                                        std::to_string(pg_->world_size()) + ")"
                                  : std::string());
}

DeviceGroup::~DeviceGroup() = default;

std::vector<int64_t> DeviceGroup::rank_split(int64_t batch) {
  if (!pg_ || pg_->world_size() == 1) return {batch};
  const bool total_changed =
      last_rank_split_.empty() ||
      std::accumulate(last_rank_split_.begin(), last_rank_split_.end(), int64_t{0}) != batch;
  if (step_ % options_.rebalance_every == 0 || total_changed) {
    // Every rank gathers the same rates and so computes the same split.
    rank_balancer_.set_rates(pg_->all_gather(rank_rate_.measured_rate(0)));
    last_rank_split_ = options_.proportional
                           ? rank_balancer_.split(batch)
                           : proportional_split(batch, std::vector<double>(pg_->world_size(), 1.0), 0);
  }
  return last_rank_split_;
}

void DeviceGroup::run_devices(const torch::Tensor& inputs, const torch::Tensor& targets,
                              int64_t offset, const std::vector<int64_t>& split, int64_t batch,
                              GroupStepStats& stats, std::vector<double>& loss_sums) {
  const size_t n = devices_.size();
  std::vector<double> seconds(n, 0.0);
  std::vector<int64_t> micro(n, 0);
  int64_t row = offset;
  for (size_t i = 0; i < n; ++i) {
    const int64_t share = split[i];
    const int64_t first = row;
    row += share;
    const int64_t cap = options_.devices[i].max_micro_batch;
    micro[i] = ThroughputBalancer::micro_batches(share, cap);
    workers_[i]->run([&, i, share, first, cap] {
      c10::DeviceGuard guard(devices_[i]);
      torch::nn::Module& model = *replicas_[i];
      model.zero_grad(/*set_to_none=*/true);
      if (share == 0) return;
      const Slowdown slowdown(options_.devices[i].slowdown);
      // A 1-thread CPU worker's compute time is its thread's CPU time (see slowdown.h).
      const bool cpu_timed = devices_[i].is_cpu() && options_.devices[i].threads == 1;
      const double cpu0 = cpu_timed ? Slowdown::thread_cpu_seconds() : 0.0;
      const auto t0 = Clock::now();
      double loss_sum = 0.0;
      for (int64_t done = 0; done < share;) {
        const int64_t b = std::min(cap, share - done);
        auto x = inputs.narrow(0, first + done, b).to(devices_[i]);
        auto y = targets.narrow(0, first + done, b).to(devices_[i]);
        const double scale = static_cast<double>(b) / static_cast<double>(batch);
        loss_sum += scale * micro_step_(model, x, y, scale);
        done += b;
      }
      if (devices_[i].is_cuda()) torch::cuda::synchronize(devices_[i].index());
      const double compute_wall = seconds_since(t0);
      const double compute_cpu = cpu_timed ? Slowdown::thread_cpu_seconds() - cpu0 : compute_wall;
      // The device's intrinsic cost: its cheapest step so far, per sequence (see the header).
      double& base = min_compute_per_seq_[i];
      const double per_seq = compute_cpu / static_cast<double>(share);
      if (base <= 0 || per_seq < base) base = per_seq;
      const double slept = slowdown.pace(t0, base * static_cast<double>(share));
      LH_LOG(Debug, "devices") << device_label(options_.devices[i], i) << ": " << share
                               << " sequences, compute " << compute_wall << " s wall, " << compute_cpu
                               << " s cpu, slept " << slept << " s";
      seconds[i] = seconds_since(t0);
      loss_sums[i] = loss_sum;
    });
  }
  std::exception_ptr first_error;
  for (size_t i = 0; i < n; ++i) {
    try {
      workers_[i]->wait();
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
  }
  if (first_error) std::rethrow_exception(first_error);
  for (size_t i = 0; i < n; ++i) {
    device_balancer_.record(static_cast<int64_t>(i), split[i], seconds[i]);
    stats.compute_seconds = std::max(stats.compute_seconds, seconds[i]);
    DeviceShare d;
    d.label = device_label(options_.devices[i], i);
    d.sequences = split[i];
    d.micro_batches = micro[i];
    d.seconds = seconds[i];
    d.rate = device_balancer_.measured_rate(static_cast<int64_t>(i));
    stats.devices.push_back(std::move(d));
  }
}

double DeviceGroup::combine(const std::vector<int64_t>& split, const std::vector<double>& loss_sums) {
  torch::NoGradGuard no_grad;
  auto primary_params = unique_parameters(*primary_);
  std::vector<torch::Tensor> grads;
  grads.reserve(primary_params.size());
  for (auto& p : primary_params) {
    if (!p.requires_grad()) continue;
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  // Σ over devices in a fixed order, on the primary's device.
  for (size_t i = 1; i < replicas_.size(); ++i) {
    if (split[i] == 0) continue;
    size_t k = 0;
    for (auto& p : unique_parameters(*replicas_[i])) {
      if (!p.requires_grad()) continue;
      if (p.grad().defined()) grads[k].add_(p.grad().to(devices_[0]));
      ++k;
    }
  }
  double loss = 0.0;
  for (double l : loss_sums) loss += l;
  if (!pg_ || pg_->world_size() == 1) return loss;
  if (!options_.reduce_gradients) {  // the caller reduce-scatters the gradients
    double total = 0.0;
    for (double l : pg_->all_gather(loss)) total += l;
    return total;
  }

  // Across ranks: one flat fp32 vector [grads..., loss], summed (host-staged for gloo).
  const torch::Device comm = pg_->comm_device();
  std::vector<torch::Tensor> parts;
  for (auto& g : grads) parts.push_back(g.reshape({-1}).to(comm, torch::kFloat32));
  parts.push_back(torch::full({1}, loss, torch::TensorOptions().dtype(torch::kFloat32).device(comm)));
  torch::Tensor flat = torch::cat(parts);
  pg_->all_reduce_sum(flat);
  int64_t off = 0;
  for (auto& g : grads) {
    g.copy_(flat.narrow(0, off, g.numel()).view(g.sizes()));
    off += g.numel();
  }
  return flat[off].item<double>();
}

GroupStepStats DeviceGroup::compute_gradients(const torch::Tensor& inputs, const torch::Tensor& targets) {
  LH_CHECK(inputs.dim() == 2 && targets.sizes() == inputs.sizes(), "inputs ", inputs.sizes(),
           " targets ", targets.sizes());
  GroupStepStats stats;
  const int64_t batch = inputs.size(0);
  LH_CHECK(batch >= 1, "empty batch");
  stats.site_sequences = batch;
  stats.rank_split = rank_split(batch);
  const int rank = pg_ ? pg_->rank() : 0;
  for (int r = 0; r < rank; ++r) stats.rank_offset += stats.rank_split[r];
  const int64_t mine = stats.rank_split[rank];
  const auto split = options_.proportional
                         ? device_balancer_.split(mine)
                         : proportional_split(mine, std::vector<double>(devices_.size(), 1.0), 0);
  ++step_;
  stats.step = step_;

  std::vector<double> loss_sums(devices_.size(), 0.0);
  run_devices(inputs, targets, stats.rank_offset, split, batch, stats, loss_sums);
  if (mine > 0 && stats.compute_seconds > 0.0) rank_rate_.record(0, mine, stats.compute_seconds);
  const auto t0 = Clock::now();
  stats.loss = combine(split, loss_sums);
  stats.combine_seconds = seconds_since(t0);

  if (split != last_split_ || step_ == 1) {
    std::ostringstream rates;
    for (size_t i = 0; i < stats.devices.size(); ++i)
      rates << (i ? ":" : "") << static_cast<int64_t>(stats.devices[i].rate + 0.5);
    LH_LOG(Info, "devices") << "step " << step_ << " split " << join(split) << " of " << mine
                            << " sequences, rates " << rates.str() << " seq/s"
                            << (stats.rank_split.size() > 1 ? ", ranks " + join(stats.rank_split) : "");
    last_split_ = split;
  }
  return stats;
}

void DeviceGroup::sync_replicas() {
  torch::NoGradGuard no_grad;
  const auto src = unique_parameters(*primary_);
  const auto src_buf = primary_->buffers();
  for (size_t i = 1; i < replicas_.size(); ++i) {
    auto dst = unique_parameters(*replicas_[i]);
    for (size_t k = 0; k < dst.size(); ++k) dst[k].copy_(src[k]);
    auto dst_buf = replicas_[i]->buffers();
    LH_CHECK_EQ(dst_buf.size(), src_buf.size());
    for (size_t k = 0; k < dst_buf.size(); ++k) dst_buf[k].copy_(src_buf[k]);
  }
}

void DeviceGroup::after_optimizer_step() {
  sync_replicas();
  if (options_.verify_every > 0 && step_ % options_.verify_every == 0) verify_replicas();
}

GroupStepStats DeviceGroup::train_step(const torch::Tensor& inputs, const torch::Tensor& targets,
                                       torch::optim::Optimizer& optimizer, double grad_clip) {
  GroupStepStats stats = compute_gradients(inputs, targets);
  if (grad_clip > 0.0) torch::nn::utils::clip_grad_norm_(unique_parameters(*primary_), grad_clip);
  optimizer.step();
  after_optimizer_step();
  return stats;
}

uint64_t DeviceGroup::replica_hash(size_t i) const {
  // The same hash the coordinator and sites compare (flat fp32 parameter bytes).
  return params_hash(*replicas_.at(i));
}

int64_t DeviceGroup::verify_replicas() {
  int64_t resynced = 0;
  const uint64_t h0 = replica_hash(0);
  bool local_bad = false;
  for (size_t i = 1; i < replicas_.size(); ++i) {
    if (replica_hash(i) != h0) {
      LH_LOG(Warn, "devices") << "replica " << device_label(options_.devices[i], i)
                              << " differs from the primary: resyncing";
      local_bad = true;
      ++resynced;
    }
  }
  if (local_bad) sync_replicas();
  if (pg_ && pg_->world_size() > 1) {
    const auto hashes = pg_->all_gather(static_cast<int64_t>(h0));
    int64_t bad = 0;
    for (size_t r = 1; r < hashes.size(); ++r) bad += hashes[r] != hashes[0];
    if (bad > 0) {
      LH_LOG(Warn, "devices") << bad << " rank(s) differ from rank 0's parameters: resyncing";
      broadcast_from_rank0();
      resynced += bad;
    }
  }
  return resynced;
}

void DeviceGroup::broadcast_from_rank0() {
  if (pg_ && pg_->world_size() > 1) {
    torch::NoGradGuard no_grad;
    auto params = unique_parameters(*primary_);
    const torch::Device comm = pg_->comm_device();
    std::vector<torch::Tensor> parts;
    for (auto& p : params) parts.push_back(p.detach().reshape({-1}).to(comm, torch::kFloat32));
    torch::Tensor flat = torch::cat(parts);
    pg_->broadcast(flat, 0);
    int64_t off = 0;
    for (auto& p : params) {
      p.copy_(flat.narrow(0, off, p.numel()).view(p.sizes()));
      off += p.numel();
    }
  }
  sync_replicas();
}

}  // namespace longhaul::inner
