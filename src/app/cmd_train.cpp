// `longhaul train --config FILE [--run-dir DIR] [--set section.key=value ...] [--resume]`:
// one site alone, no network. See src/inner/train_run.h for what the run dir holds.
#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include <iostream>
#include <sstream>

#include "app/commands.h"
#include "app/process_group_cli.h"
#include "common/config_reader.h"
#include "common/error.h"
#include "inner/train_config.h"
#include "inner/train_run.h"

namespace longhaul::app {

namespace {
// config.effective.toml must work from the run dir too: data.path (resolved against the config
// file's directory) is written as an absolute path.
std::string with_absolute_data_path(const std::string& effective, const std::string& data_path) {
  toml::table t = toml::parse(effective);
  if (auto* data = t["data"].as_table())
    data->insert_or_assign("path", std::filesystem::absolute(data_path).lexically_normal().string());
  std::ostringstream os;
  os << t << "\n";
  return os.str();
}

struct TrainArgs {
  std::string config;
  std::string run_dir;
  std::vector<std::string> sets;
  bool resume = false;
  ProcessGroupArgs group;  // a multi-process site
};
}  // namespace

void register_train(CLI::App& app, CommandFn& run) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "train a GPT on one site alone (no network)");
  cmd->add_option("--config", args->config, "TOML config (see configs/train-local.toml)")->required();
  cmd->add_option("--run-dir", args->run_dir, "where the run writes everything (default: train.run_dir)");
  cmd->add_option("--set", args->sets, "override a config key: section.key=value (repeatable)")
      ->take_all();
  cmd->add_flag("--resume", args->resume, "continue from the newest checkpoint in the run dir");
  add_process_group_options(cmd, args->group, "hosts the rendezvous");
  cmd->callback([&run, args] {
    run = [args]() -> int {
      auto reader = ConfigReader::from_file(args->config, args->sets);
      inner::TrainConfig cfg = inner::read_train_config(reader);
      inner::RunOptions opts;
      opts.run_dir = args->run_dir.empty() ? cfg.train.run_dir : std::filesystem::path(args->run_dir);
      opts.resume = args->resume;
      opts.group = process_group_options(args->group);
      opts.effective_toml = with_absolute_data_path(reader.effective_toml(), cfg.data.path);
      auto summary = inner::run_training(cfg, opts);
      std::cout << "run dir: " << opts.run_dir.string() << "\n"
                << "steps: " << summary.steps << "  final val_loss: " << summary.val_loss << "\n";
      return 0;
    };
  });
}

}  // namespace longhaul::app
