// Test helper: one rank of a multi-process site, training the tiny LM on deterministic
// batches through a DeviceGroup joined to a SiteProcessGroup. process_group_test spawns it.
//   site_rank_helper --rank R --world-size W --rendezvous HOST:PORT [--timeout-ms T]
//                    [--steps N] [--batch B] [--slowdowns 1,2] [--seed S] [--die-at-step K]
//                    [--device cpu|cuda:N] [--backend auto|gloo|nccl] [--collectives 1]
// One device per --slowdowns entry, each on --device (default cpu). Prints "backend <name>"
// once the group formed, then "step <s> loss <loss> hash <hex> ranks <a:b>" per step on
// stdout; on error prints "error: <what>" on stderr and exits 2 (RankError/UserError) or 1.
// --collectives 1: instead of training, checks every SiteProcessGroup call against known
// results on the group's comm device and prints "collectives ok".
// --config FILE: instead of the tiny LM, the real Trainer (inner/trainer.h) from a `longhaul
// train` TOML (train.shard_optimizer included) for --steps steps; [--load CKPT] resumes from a
// checkpoint first, [--save CKPT] writes one after the steps, [--dump FILE] writes the final
// parameters as raw fp32; prints "state_bytes <AdamW moment bytes of this rank>" at the end.
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#include "common/error.h"
#include "inner/device_group.h"
#include "common/config_reader.h"
#include "inner/flat_params.h"
#include "inner/process_group.h"
#include "inner/trainer.h"
#include "tiny_lm.h"

using namespace longhaul;

namespace {
void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("collective check failed: " + what);
}

// Rank r contributes values derived from r; every call's result is known in closed form.
void check_collectives(inner::SiteProcessGroup& pg) {
  const int r = pg.rank(), w = pg.world_size();
  const auto on = torch::TensorOptions().dtype(torch::kFloat32).device(pg.comm_device());
  auto t = torch::tensor({1.0f, 10.0f}, on) * float(r + 1);
  pg.all_reduce_sum(t);
  const float sum = float(w * (w + 1) / 2);
  expect(t.device() == pg.comm_device(), "all_reduce_sum moved its tensor");
  expect(t.cpu().equal(torch::tensor({sum, 10 * sum})), "all_reduce_sum");
  auto b = torch::full({3}, float(r), on);
  pg.broadcast(b, w - 1);
  expect(b.cpu().equal(torch::full({3}, float(w - 1))), "broadcast from the last rank");
  const auto g = pg.all_gather(double(r) + 0.25);
  const auto gi = pg.all_gather(int64_t{r} * int64_t{1000000007});
  for (int k = 0; k < w; ++k) {
    expect(g.at(k) == double(k) + 0.25, "all_gather(double)");
    expect(gi.at(k) == int64_t{k} * int64_t{1000000007}, "all_gather(int64)");
  }
  pg.barrier();
  pg.post("hello/" + std::to_string(r), "from " + std::to_string(r));
  for (int k = 0; k < w; ++k) {
    std::optional<std::string> v;
    for (int tries = 0; tries < 500 && !(v = pg.poll("hello/" + std::to_string(k))); ++tries)
      usleep(10000);
    expect(v == "from " + std::to_string(k), "post/poll of rank " + std::to_string(k));
  }
  pg.barrier();  // nobody leaves before every rank has read every post
}

struct TrainerRun {
  std::string config, load, save, dump;
};

// The real Trainer over the group: the steps it prints are the same lines as the tiny LM's.
int run_trainer(const TrainerRun& run, int64_t steps, inner::SiteProcessGroup* pg) {
  auto reader = ConfigReader::from_file(run.config);
  const inner::TrainConfig cfg = inner::read_train_config(reader);
  auto corpus = std::make_shared<inner::Corpus>(inner::load_corpus(cfg.data));
  inner::Trainer t(cfg, corpus, pg);
  if (!run.load.empty()) t.load_checkpoint(run.load);
  t.broadcast_from_rank0();
  for (int64_t s = 0; s < steps; ++s) {
    const inner::StepResult r = t.step();
    std::printf("step %" PRId64 " loss %.9g hash %016" PRIx64 " ranks -\n", r.step - 1, r.loss,
                inner::params_hash(*t.model()));
    std::fflush(stdout);
  }
  if (!run.save.empty()) t.save_checkpoint(run.save);
  if (!run.dump.empty()) {
    const std::vector<float> flat = inner::params_to_flat(*t.model());
    FILE* f = std::fopen(run.dump.c_str(), "wb");
    if (!f || std::fwrite(flat.data(), sizeof(float), flat.size(), f) != flat.size())
      throw std::runtime_error("cannot write " + run.dump);
    std::fclose(f);
  }
  std::printf("state_bytes %" PRId64 "\n", t.optimizer_state_bytes());
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  inner::ProcessGroupOptions pgo;
  int64_t steps = 3, batch = 8, die_at = -1, collectives = 0;
  uint64_t seed = 1;
  std::string slowdowns = "1", rendezvous, device = "cpu";
  TrainerRun trainer_run;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--rank") pgo.rank = std::stoi(v);
    else if (k == "--world-size") pgo.world_size = std::stoi(v);
    else if (k == "--rendezvous") rendezvous = v;
    else if (k == "--timeout-ms") pgo.timeout = std::chrono::milliseconds(std::stoll(v));
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--slowdowns") slowdowns = v;
    else if (k == "--seed") seed = std::stoull(v);
    else if (k == "--die-at-step") die_at = std::stoll(v);
    else if (k == "--device") device = v;
    else if (k == "--backend") pgo.backend = v;
    else if (k == "--collectives") collectives = std::stoll(v);
    else if (k == "--config") trainer_run.config = v;
    else if (k == "--load") trainer_run.load = v;
    else if (k == "--save") trainer_run.save = v;
    else if (k == "--dump") trainer_run.dump = v;
    else {
      std::fprintf(stderr, "error: unknown argument %s\n", k.c_str());
      return 1;
    }
  }
  try {
    inner::DeviceGroupOptions opts;
    opts.devices.clear();
    std::vector<std::string> names;
    std::stringstream ss(slowdowns);
    for (std::string item; std::getline(ss, item, ',');) {
      inner::DeviceSpec d;
      d.device = device;
      d.slowdown = std::stod(item);
      d.max_micro_batch = 3;
      opts.devices.push_back(d);
      names.push_back(device);
    }
    std::unique_ptr<inner::SiteProcessGroup> pg;
    if (!rendezvous.empty()) {
      inner::parse_rendezvous(rendezvous, pgo);
      pg = inner::SiteProcessGroup::connect(pgo, names);
      std::printf("backend %s\n", pg->backend_name().c_str());
      std::fflush(stdout);
      if (collectives) {
        check_collectives(*pg);
        std::printf("collectives ok\n");
        return 0;
      }
    }
    if (!trainer_run.config.empty()) return run_trainer(trainer_run, steps, pg.get());
    const test::TinyLmShape shape;
    auto primary = test::make_tiny_lm(shape, seed);
    torch::optim::AdamW opt(primary->parameters(), torch::optim::AdamWOptions(1e-2));
    inner::DeviceGroup group(primary, test::tiny_lm_factory(shape), test::tiny_lm_micro_step(), opts, pg.get());
    group.broadcast_from_rank0();  // as at a round boundary
    for (int64_t s = 0; s < steps; ++s) {
      if (s == die_at) {
        std::fprintf(stderr, "rank %d: dying at step %" PRId64 " as asked\n", pgo.rank, s);
        std::fflush(stderr);
        _exit(3);
      }
      auto [x, y] = test::tiny_batch(shape, batch, seed, s);
      auto stats = group.train_step(x, y, opt);
      std::ostringstream ranks;
      for (size_t r = 0; r < stats.rank_split.size(); ++r) ranks << (r ? ":" : "") << stats.rank_split[r];
      std::printf("step %" PRId64 " loss %.9g hash %016" PRIx64 " ranks %s\n", s, stats.loss,
                  group.replica_hash(0), ranks.str().c_str());
      std::fflush(stdout);
    }
    return 0;
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
