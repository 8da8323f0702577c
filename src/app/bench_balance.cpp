// `longhaul bench balance --speeds 1,2,4`: how close a site of devices with different speeds
// gets to the sum of their solo throughputs, with the throughput-proportional split against
// an equal split, all measured in the same run on the same machine.
//
// Each device is a 1-thread CPU worker whose speed is emulated (inner/slowdown.h): speed s
// becomes slowdown base · max(speeds) / s. `--base-slowdown` (default 8) slows every device
// alike so that the emulated devices, which here share the machine's cores, do not contend for
// them (separate accelerators would not). Every measurement is of full inner steps
// (forward/backward of the site batch, gradient combine, AdamW step, replica sync) of a small
// GPT, after warm-up steps that also let the balancer converge. The machine is shared and
// noisy, so `--rounds` rounds each measure every configuration in turn (solo runs, proportional,
// equal) and the medians are reported.
// Output: one JSON line {"speeds":[..],"proportional_share_of_sum":..,"equal_share_of_sum":..,...}.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "app/commands.h"
#include "common/error.h"
#include "common/log.h"
#include "inner/device_group.h"
#include "inner/gpt.h"

namespace longhaul::app {
namespace {

struct BalanceArgs {
  std::string speeds = "1,2,4";
  int64_t batch_per_speed = 4;  // site batch = this x sum(speeds), in sequences
  int64_t steps = 3;            // timed steps per measurement
  int64_t warmup = 3;           // untimed steps first (balancer convergence)
  double base_slowdown = 8.0;
  bool verbose = false;         // per-step and per-device timings on stderr
  int64_t rounds = 5;           // every configuration measured once per round; medians reported
  int64_t seq = 64;             // tokens per sequence
  int64_t micro_batch = 4;      // every device's max_micro_batch: the same micro-batch size in
                                // solo and combined runs, so per-sequence cost is comparable
};

std::vector<double> parse_speeds(const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    double v = 0;
    try {
      size_t used = 0;
      v = std::stod(item, &used);
      if (used != item.size()) v = 0;
    } catch (const std::exception&) {
    }
    if (!(v > 0 && v <= 100)) throw UserError("--speeds '" + s + "': '" + item + "' is not a number in (0, 100]");
    out.push_back(v);
  }
  if (out.empty() || out.size() > 16) throw UserError("--speeds '" + s + "': expected 1 to 16 comma-separated speeds");
  return out;
}

// Site throughput in sequences/s of `devices` training steps of `batch` sequences.
double measure(const std::vector<inner::DeviceSpec>& devices, bool proportional, const BalanceArgs& a,
               int64_t batch, const inner::GptConfig& cfg, std::vector<int64_t>* split_out) {
  torch::manual_seed(1);
  inner::Gpt model(cfg);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-3));
  inner::DeviceGroupOptions o;
  o.devices = devices;
  o.proportional = proportional;
  o.verify_every = 0;
  auto factory = [cfg] { return inner::Gpt(cfg).ptr(); };
  auto step = inner::micro_step_from_loss([](torch::nn::Module& m, const torch::Tensor& x, const torch::Tensor& y) {
    return static_cast<inner::GptImpl&>(m).loss(x, y);
  });
  inner::DeviceGroup group(model.ptr(), factory, step, o);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  auto tokens = torch::randint(cfg.vocab_size, {batch, a.seq + 1}, gen, torch::kInt64);
  auto x = tokens.narrow(1, 0, a.seq).contiguous(), y = tokens.narrow(1, 1, a.seq).contiguous();
  for (int64_t s = 0; s < a.warmup; ++s) group.train_step(x, y, opt);
  const auto t0 = std::chrono::steady_clock::now();
  inner::GroupStepStats last;
  for (int64_t s = 0; s < a.steps; ++s) {
    const auto s0 = std::chrono::steady_clock::now();
    last = group.train_step(x, y, opt);
    LH_LOG(Debug, "bench") << "step " << s << " "
                           << std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count()
                           << " s, compute " << last.compute_seconds << " s";
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (split_out) {
    split_out->clear();
    for (const auto& d : last.devices) split_out->push_back(d.sequences);
  }
  return static_cast<double>(batch * a.steps) / secs;
}

int run_balance(const BalanceArgs& a) {
  if (a.verbose) set_log_level(LogLevel::kDebug);
  const auto speeds = parse_speeds(a.speeds);
  const double fastest = *std::max_element(speeds.begin(), speeds.end());
  const double speed_sum = std::accumulate(speeds.begin(), speeds.end(), 0.0);
  const auto batch = std::max<int64_t>(static_cast<int64_t>(a.batch_per_speed * speed_sum + 0.5),
                                       static_cast<int64_t>(speeds.size()));
  inner::GptConfig cfg;
  cfg.n_layer = 2;
  cfg.n_head = 4;
  cfg.n_embd = 64;
  cfg.block_size = a.seq;
  cfg.vocab_size = 256;
  cfg.validate();

  std::vector<inner::DeviceSpec> devices;
  for (double s : speeds) {
    inner::DeviceSpec d;
    d.device = "cpu";
    d.threads = 1;
    d.slowdown = a.base_slowdown * fastest / s;
    d.max_micro_batch = a.micro_batch;
    devices.push_back(d);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  };
  // One-time costs (allocator, lazy initialisation) on an unslowed device, outside any timing.
  {
    auto warm = devices.back();
    warm.slowdown = 1.0;
    BalanceArgs w = a;
    w.warmup = 1;
    w.steps = 1;
    measure({warm}, true, w, batch, cfg, nullptr);
  }
  std::vector<std::vector<double>> solo_runs(devices.size());
  std::vector<double> share_prop, share_equal, prop_runs, equal_runs;
  std::vector<int64_t> prop_split, equal_split;
  for (int64_t r = 0; r < a.rounds; ++r) {
    double solo_sum = 0.0;
    for (size_t i = 0; i < devices.size(); ++i) {
      solo_runs[i].push_back(measure({devices[i]}, true, a, batch, cfg, nullptr));
      solo_sum += solo_runs[i].back();
    }
    prop_runs.push_back(measure(devices, true, a, batch, cfg, &prop_split));
    equal_runs.push_back(measure(devices, false, a, batch, cfg, &equal_split));
    share_prop.push_back(prop_runs.back() / solo_sum);
    share_equal.push_back(equal_runs.back() / solo_sum);
  }
  std::vector<double> solo;
  for (auto& runs : solo_runs) solo.push_back(median(runs));
  const double solo_sum = std::accumulate(solo.begin(), solo.end(), 0.0);
  const double prop = median(prop_runs), equal = median(equal_runs);

  nlohmann::json j;
  j["speeds"] = speeds;
  // Median over rounds of (site throughput / sum of that round's solo throughputs).
  j["proportional_share_of_sum"] = median(share_prop);
  j["equal_share_of_sum"] = median(share_equal);
  j["solo_seq_per_s"] = solo;
  j["sum_of_solo_seq_per_s"] = solo_sum;
  j["proportional_seq_per_s"] = prop;
  j["equal_seq_per_s"] = equal;
  j["proportional_split"] = prop_split;
  j["equal_split"] = equal_split;
  j["batch"] = batch;
  j["base_slowdown"] = a.base_slowdown;
  j["steps"] = a.steps;
  j["rounds"] = a.rounds;
  j["micro_batch"] = a.micro_batch;
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

void register_bench_balance(CLI::App& app, CommandFn& run) {
  auto args = std::make_shared<BalanceArgs>();
  auto* cmd = app.add_subcommand("balance",
                                 "site throughput of devices with emulated speeds: proportional vs equal split");
  cmd->add_option("--speeds", args->speeds, "relative device speeds, comma-separated (e.g. 1,2,4)");
  cmd->add_option("--batch-per-speed", args->batch_per_speed, "site batch = this x sum(speeds) sequences")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--steps", args->steps, "timed inner steps per measurement")->check(CLI::Range(1, 1000));
  cmd->add_option("--warmup", args->warmup, "untimed steps before each measurement")->check(CLI::Range(0, 1000));
  cmd->add_option("--base-slowdown", args->base_slowdown,
                  "slowdown of the fastest device (>= 1; keeps emulated devices off each other's cores)")
      ->check(CLI::Range(1.0, 100.0));
  cmd->add_option("--seq", args->seq, "tokens per sequence")->check(CLI::Range(2, 1024));
  cmd->add_option("--micro-batch", args->micro_batch, "max_micro_batch of every device")->check(CLI::Range(1, 4096));
  cmd->add_flag("--verbose", args->verbose, "log every step's and device's timings (stderr)");
  cmd->add_option("--rounds", args->rounds, "measure every configuration this many times; report medians")
      ->check(CLI::Range(1, 100));
  cmd->callback([&run, args] { run = [args] { return run_balance(*args); }; });
}

}  // namespace longhaul::app
