// `longhaul site --config configs/site-a.toml [--run-dir DIR] [--set k=v]...`
#include <CLI/CLI.hpp>

#include <csignal>

#include "app/commands.h"
#include "common/error.h"
#include "common/log.h"
#include "outer/site_service.h"

namespace longhaul::app {

namespace {
struct SiteArgs {
  std::string config;
  std::string run_dir;
  std::vector<std::string> overrides;
  std::string log_level = "info";
};
void on_signal(int) { outer::SiteService::request_stop(); }
}  // namespace

void register_site(CLI::App& app, CommandFn& run) {
  auto args = std::make_shared<SiteArgs>();
  auto* cmd = app.add_subcommand("site", "Run one DiLoCo site (trains its shard, syncs with the coordinator)");
  cmd->add_option("--config", args->config, "site TOML file")->required();
  cmd->add_option("--run-dir", args->run_dir,
                  "checkpoints, residual, metrics (default runs/<site id>); restart resumes");
  cmd->add_option("--set", args->overrides, "override a config key: section.key=value");
  cmd->add_option("--log-level", args->log_level, "debug|info|warn|error")->capture_default_str();
  cmd->callback([&run, args] {
    run = [args]() -> int {
      set_log_level(parse_log_level(args->log_level));
      auto cfg = outer::read_site_config(args->config, args->overrides);
      std::string dir = args->run_dir.empty() ? "runs/" + cfg.id : args->run_dir;
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      outer::SiteService s(std::move(cfg), dir);
      return s.run();
    };
  });
}

}  // namespace longhaul::app
