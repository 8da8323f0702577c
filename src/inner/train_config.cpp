#include "inner/train_config.h"

#include "common/error.h"
#include "inner/device.h"

namespace longhaul::inner {

namespace {
constexpr int64_t kBig = int64_t{1} << 40;

// Re-throws a validate() error with the config file's name in front.
template <typename F>
void with_origin(const ConfigReader& r, F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    throw ConfigError(r.origin() + ": " + e.what());
  }
}
}  // namespace

GptConfig read_model_config(ConfigReader& r) {
  GptConfig m;
  m.n_layer = r.get_int("model.n_layer", m.n_layer, 1, 1024);
  m.n_head = r.get_int("model.n_head", m.n_head, 1, 1024);
  m.n_embd = r.get_int("model.n_embd", m.n_embd, 1, 65536);
  m.block_size = r.get_int("model.block_size", m.block_size, 1, 1 << 20);
  m.vocab_size = r.get_int("model.vocab_size", m.vocab_size, 1, 65536);
  m.dropout = r.get_double("model.dropout", m.dropout, 0.0, 0.99);
  m.bias = r.get_bool("model.bias", m.bias);
  if (m.n_embd % m.n_head != 0)
    r.fail("model.n_embd", "a multiple of model.n_head = " + std::to_string(m.n_head));
  with_origin(r, [&] { m.validate(); });
  return m;
}

CorpusSpec read_data_config(ConfigReader& r, const GptConfig& model) {
  CorpusSpec d;
  d.path = r.get_path("data.path", "").string();
  if (d.path.empty()) r.fail("data.path", "the corpus: a text file, a directory or a glob");
  d.format = r.get_enum("data.format", d.format, {"auto", "text", "bin"});
  d.val_fraction = r.get_double("data.val_fraction", d.val_fraction, 0.0, 0.5);
  d.num_shards = r.get_int("data.num_shards", d.num_shards, 1, 1 << 16);
  d.shard_index = r.get_int("data.shard_index", d.shard_index, 0, (1 << 16) - 1);
  if (d.shard_index >= d.num_shards)
    r.fail("data.shard_index", "an integer in [0, data.num_shards = " + std::to_string(d.num_shards) + ")");
  d.block_size = model.block_size;
  d.vocab_size = model.vocab_size;
  return d;
}

InnerOptimConfig read_optim_config(ConfigReader& r, int64_t total_steps) {
  InnerOptimConfig o;
  o.lr = r.get_positive("optim.lr", o.lr, 10.0);
  o.min_lr = r.get_double("optim.min_lr", o.min_lr, 0.0, 10.0);
  if (o.min_lr > o.lr) r.fail("optim.min_lr", "a number in [0, optim.lr]");
  o.beta1 = r.get_double("optim.beta1", o.beta1, 0.0, 0.999999);
  o.beta2 = r.get_double("optim.beta2", o.beta2, 0.0, 0.999999);
  o.eps = r.get_positive("optim.eps", o.eps, 1.0);
  o.weight_decay = r.get_double("optim.weight_decay", o.weight_decay, 0.0, 10.0);
  o.warmup_steps = r.get_int("optim.warmup_steps", std::min<int64_t>(o.warmup_steps, total_steps / 10), 0, kBig);
  o.decay_steps = r.get_int("optim.decay_steps", std::max(total_steps, o.warmup_steps + 1), 1, kBig);
  if (o.decay_steps <= o.warmup_steps)
    r.fail("optim.decay_steps", "an integer > optim.warmup_steps = " + std::to_string(o.warmup_steps));
  o.grad_clip = r.get_double("optim.grad_clip", o.grad_clip, 0.0, 1e6);
  with_origin(r, [&] { o.validate(); });
  return o;
}

LoopConfig read_loop_config(ConfigReader& r) {
  LoopConfig t;
  t.steps = r.get_int("train.steps", t.steps, 1, kBig);
  t.batch_size = r.get_int("train.batch_size", t.batch_size, 1, 1 << 20);
  t.grad_accum = r.get_int("train.grad_accum", t.grad_accum, 1, 1 << 16);
  t.seed = r.get_int("train.seed", t.seed, 0, kBig);
  t.device = r.get_string("train.device", t.device);
  try {
    parse_device(t.device);
  } catch (const UserError& e) {
    r.fail("train.device", std::string("\"cpu\", \"cuda\" or \"cuda:N\" on this machine (") + e.what() + ")");
  }
  t.bf16_autocast = r.get_bool("train.bf16_autocast", t.bf16_autocast);
  t.threads = r.get_int("train.threads", t.threads, 0, 4096);
  t.log_every = r.get_int("train.log_every", t.log_every, 1, kBig);
  t.eval_every = r.get_int("train.eval_every", t.eval_every, 0, kBig);
  t.eval_batches = r.get_int("train.eval_batches", t.eval_batches, 1, 1 << 16);
  t.checkpoint_every = r.get_int("train.checkpoint_every", t.checkpoint_every, 0, kBig);
  t.keep_checkpoints = r.get_int("train.keep_checkpoints", t.keep_checkpoints, 1, 1000);
  t.run_dir = r.get_string("train.run_dir", t.run_dir.string());
  t.devices = read_device_specs(r, "train.devices", {}, t.batch_size);
  if (!t.devices.empty()) {
    if (r.has("train.device") && t.device != t.devices[0].device)
      r.fail("train.device", "unset, or equal to train.devices[0].device = \"" + t.devices[0].device +
                                 "\" (the primary device)");
    t.device = t.devices[0].device;
    for (size_t i = 0; i < t.devices.size(); ++i) {
      try {
        parse_device(t.devices[i].device);
      } catch (const UserError& e) {
        r.fail("train.devices[" + std::to_string(i) + "].device", std::string("a device on this machine (") + e.what() + ")");
      }
    }
  }
  t.verify_every = r.get_int("train.verify_every", t.verify_every, 0, kBig);
  t.process_group_backend =
      r.get_enum("train.process_group_backend", t.process_group_backend, {"auto", "gloo", "nccl"});
  t.shard_optimizer = r.get_bool("train.shard_optimizer", t.shard_optimizer);
  return t;
}

std::vector<std::string> LoopConfig::device_names() const {
  if (devices.empty()) return {device};
  std::vector<std::string> names;
  for (const auto& d : devices) names.push_back(d.device);
  return names;
}

TrainConfig read_train_config(ConfigReader& r) {
  TrainConfig c;
  c.model = read_model_config(r);
  c.data = read_data_config(r, c.model);
  c.train = read_loop_config(r);
  c.optim = read_optim_config(r, c.train.steps);
  r.finish();
  return c;
}

}  // namespace longhaul::inner
