// Test helper: one rank of a multi-process site, training the tiny LM on deterministic
// batches through a DeviceGroup joined to a SiteProcessGroup. process_group_test spawns it.
//   site_rank_helper --rank R --world-size W --rendezvous HOST:PORT [--timeout-ms T]
//                    [--steps N] [--batch B] [--slowdowns 1,2] [--seed S] [--die-at-step K]
// Prints "step <s> loss <loss> hash <hex> ranks <a:b>" per step on stdout; on error prints
// "error: <what>" on stderr and exits 2 (RankError/UserError) or 1.
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <unistd.h>

#include "common/error.h"
#include "inner/device_group.h"
#include "inner/process_group.h"
#include "tiny_lm.h"

using namespace longhaul;

int main(int argc, char** argv) {
  inner::ProcessGroupOptions pgo;
  int64_t steps = 3, batch = 8, die_at = -1;
  uint64_t seed = 1;
  std::string slowdowns = "1", rendezvous;
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
    else {
      std::fprintf(stderr, "error: unknown argument %s\n", k.c_str());
      return 1;
    }
  }
  try {
    std::unique_ptr<inner::SiteProcessGroup> pg;
    if (!rendezvous.empty()) {
      inner::parse_rendezvous(rendezvous, pgo);
      pg = inner::SiteProcessGroup::connect(pgo);
    }
    inner::DeviceGroupOptions opts;
    opts.devices.clear();
    std::stringstream ss(slowdowns);
    for (std::string item; std::getline(ss, item, ',');) {
      inner::DeviceSpec d;
      d.slowdown = std::stod(item);
      d.max_micro_batch = 3;
      opts.devices.push_back(d);
    }
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
