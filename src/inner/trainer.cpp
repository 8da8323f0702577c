#include "inner/trainer.h"

#include <chrono>
#include <cmath>

#include "common/error.h"
#include "inner/device.h"
#include "inner/device_group.h"
#include "inner/flat_params.h"
#include "inner/inner_optimizer.h"
#include "inner/lr_schedule.h"
#include "inner/process_group.h"
#include "inner/sharded_optimizer.h"

namespace longhaul::inner {

namespace {
Gpt build_model(const TrainConfig& cfg, const torch::Device& device) {
  if (cfg.train.threads > 0) torch::set_num_threads(static_cast<int>(cfg.train.threads));
  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed));
  Gpt model(cfg.model);
  model->to(device);
  model->train();
  return model;
}
}  // namespace

Trainer::Trainer(const TrainConfig& cfg, std::shared_ptr<const Corpus> corpus, SiteProcessGroup* pg)
    : cfg_(cfg),
      corpus_(std::move(corpus)),
      device_(parse_device(cfg.train.device)),
      model_(build_model(cfg_, device_)),
      optimizer_(cfg.train.shard_optimizer && pg != nullptr ? nullptr
                                                             : make_inner_optimizer(model_, cfg_.optim)),
      sampler_(corpus_->train, cfg_.train.batch_size, cfg_.model.block_size,
               static_cast<uint64_t>(cfg_.train.seed)) {
  if (!cfg_.train.devices.empty() || pg != nullptr) {
    DeviceGroupOptions o;
    o.devices = cfg_.train.devices;
    if (o.devices.empty()) {  // one device per rank: the configured one
      o.devices.resize(1);
      o.devices[0].device = cfg_.train.device;
      o.devices[0].max_micro_batch = cfg_.train.batch_size;
      o.devices[0].threads = std::max(1, at::get_num_threads());
    }
    o.verify_every = cfg_.train.verify_every;
    o.reduce_gradients = optimizer_ != nullptr;  // sharded: ShardedAdamW reduce-scatters
    const GptConfig mc = cfg_.model;
    const bool autocast = cfg_.train.bf16_autocast;
    group_ = std::make_unique<DeviceGroup>(
        model_.ptr(), [mc] { return Gpt(mc).ptr(); },
        // One micro-batch on a replica: forward (autocast on CUDA when enabled), loss, backward.
        [autocast](torch::nn::Module& m, const torch::Tensor& x, const torch::Tensor& y, double scale) {
          torch::Tensor loss;  // [] fp32, mean CE (nats/token)
          {
            AutocastGuard guard(x.device(), autocast);
            loss = static_cast<GptImpl&>(m).loss(x, y);
          }
          (loss * scale).backward();
          return loss.item<double>();
        },
        o, pg);
  }
  if (!optimizer_) sharded_ = std::make_unique<ShardedAdamW>(*model_, cfg_.optim, *pg);
}

torch::optim::AdamW& Trainer::optimizer() { return sharded_ ? sharded_->adamw() : *optimizer_; }

int64_t Trainer::optimizer_state_bytes() { return adamw_state_bytes(optimizer()); }

void Trainer::release_gradients() { model_->zero_grad(/*set_to_none=*/true); }

Trainer::~Trainer() = default;

void Trainer::broadcast_from_rank0() {
  if (group_) group_->broadcast_from_rank0();
}

torch::Tensor Trainer::forward_backward(const Batch& batch, double scale) {
  auto x = batch.x.to(device_, /*non_blocking=*/true);  // [B, T] int64
  auto y = batch.y.to(device_, /*non_blocking=*/true);  // [B, T] int64
  torch::Tensor loss;                                    // [] fp32, mean CE (nats/token)
  {
    AutocastGuard autocast(device_, cfg_.train.bf16_autocast);
    loss = model_->loss(x, y);
  }
  (scale == 1.0 ? loss : loss * scale).backward();
  return loss.detach();
}

void Trainer::follow_schedule(double position, double stride) {
  LH_CHECK(position >= 0 && std::isfinite(position) && stride > 0 && std::isfinite(stride),
           "schedule position ", position, " stride ", stride);
  sched_pos_ = position;
  sched_stride_ = stride;
}

StepResult Trainer::step() {
  const auto t0 = std::chrono::steady_clock::now();
  const double lr = sched_pos_ >= 0 ? lr_at_position(sched_pos_, cfg_.optim) : lr_at(step_, cfg_.optim);
  if (sched_pos_ >= 0) sched_pos_ += sched_stride_;
  set_lr(optimizer(), lr);
  model_->zero_grad(/*set_to_none=*/true);

  const int64_t accum = cfg_.train.grad_accum;
  if (group_) {  // several devices/ranks: the whole step's batch through the DeviceGroup
    const auto d0 = std::chrono::steady_clock::now();
    std::vector<torch::Tensor> xs, ys;
    for (int64_t micro = 0; micro < accum; ++micro) {
      Batch b = sampler_.next();
      xs.push_back(b.x);
      ys.push_back(b.y);
    }
    auto x = torch::cat(xs), y = torch::cat(ys);  // [batch_size * accum, T] int64, CPU
    const double data_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
    const GroupStepStats g = group_->compute_gradients(x, y);
    double grad_norm = 0;
    if (sharded_) {  // reduce-scatter, clip, step this rank's shard, all-gather
      grad_norm = sharded_->step(cfg_.optim.grad_clip);
    } else {
      grad_norm = clip_grad_norm(*model_, cfg_.optim.grad_clip);
      optimizer_->step();
    }
    group_->after_optimizer_step();
    ++step_;
    tokens_ += tokens_per_step();
    StepResult r;
    r.step = step_;
    r.loss = g.loss;
    r.lr = lr;
    r.grad_norm = grad_norm;
    r.tokens = tokens_;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.data_seconds = data_seconds;
    r.devices = to_json(g);
    train_seconds_ += r.seconds;
    return r;
  }
  torch::Tensor loss_sum;  // [] on device_; one host sync per step, not per micro-batch
  double data_seconds = 0;
  for (int64_t micro = 0; micro < accum; ++micro) {
    const auto d0 = std::chrono::steady_clock::now();
    Batch batch = sampler_.next();
    data_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
    torch::Tensor loss = forward_backward(batch, 1.0 / static_cast<double>(accum));
    loss_sum = micro == 0 ? loss : loss_sum + loss;
  }
  const double grad_norm = clip_grad_norm(*model_, cfg_.optim.grad_clip);
  optimizer_->step();

  ++step_;
  tokens_ += tokens_per_step();
  StepResult r;
  r.step = step_;
  r.loss = loss_sum.item<double>() / static_cast<double>(accum);
  r.lr = lr;
  r.grad_norm = grad_norm;
  r.tokens = tokens_;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.data_seconds = data_seconds;
  train_seconds_ += r.seconds;
  return r;
}

TrainStats Trainer::train_steps(int64_t n, const std::function<void(const StepResult&)>& on_step) {
  TrainStats s;
  double loss_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    StepResult r = step();
    ++s.steps;
    s.tokens += tokens_per_step();
    s.seconds += r.seconds;
    loss_sum += r.loss;
    s.last_loss = r.loss;
    if (on_step) on_step(r);
  }
  s.mean_loss = s.steps ? loss_sum / static_cast<double>(s.steps) : 0.0;
  return s;
}

double Trainer::evaluate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  const int64_t B = cfg_.train.batch_size, T = cfg_.model.block_size;
  const auto offsets = evenly_spaced_offsets(corpus_->val.size(), T, cfg_.train.eval_batches * B);
  double sum = 0;
  for (int64_t b = 0; b < cfg_.train.eval_batches; ++b) {
    std::vector<int64_t> part(offsets.begin() + b * B, offsets.begin() + (b + 1) * B);
    Batch batch = make_batch(corpus_->val, part, T);
    AutocastGuard autocast(device_, cfg_.train.bf16_autocast);
    sum += model_->loss(batch.x.to(device_), batch.y.to(device_)).item<double>();
  }
  model_->train();
  return sum / static_cast<double>(cfg_.train.eval_batches);
}

void Trainer::save_checkpoint(const std::filesystem::path& path, const nlohmann::json& extra,
                              const CheckpointBlobs& blobs) {
  CheckpointMeta m;
  m.step = step_;
  m.tokens = tokens_;
  m.train_seconds = train_seconds_;
  m.sampler = sampler_.state();
  m.model = cfg_.model;
  m.manifest_hash = param_manifest(*model_).hash();
  m.extra = extra;
  if (sharded_) m.optimizer_shard = sharded_->layout().to_json();
  write_checkpoint(path, m, *model_, optimizer(), blobs);
}

CheckpointMeta Trainer::load_checkpoint(const std::filesystem::path& path, CheckpointBlobs* blobs) {
  const nlohmann::json shard = sharded_ ? sharded_->layout().to_json() : nlohmann::json();
  CheckpointMeta m = read_checkpoint(path, *model_, optimizer(), cfg_.model, device_, shard, blobs);
  if (m.sampler.seed != static_cast<uint64_t>(cfg_.train.seed))
    throw DataError(path.string() + ": checkpoint was written with train.seed = " +
                    std::to_string(m.sampler.seed) + ", the config says " +
                    std::to_string(cfg_.train.seed));
  step_ = m.step;
  tokens_ = m.tokens;
  train_seconds_ = m.train_seconds;
  sampler_.set_state(m.sampler);
  return m;
}

}  // namespace longhaul::inner
