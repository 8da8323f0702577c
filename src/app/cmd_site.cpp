// `longhaul site --config configs/site-a.toml [--run-dir DIR] [--set k=v]...
//      [--rank R --world-size W --rendezvous HOST:PORT [--rank-timeout-ms N]]`
// With --world-size > 1 the site is several processes (outer/site_follower.h): rank 0 talks to
// the coordinator, ranks > 0 follow it; every rank needs the same [data] and [train] seed.
#include <CLI/CLI.hpp>

#include <csignal>

#include "app/commands.h"
#include "app/process_group_cli.h"
#include "common/error.h"
#include "common/log.h"
#include "inner/process_group.h"
#include "outer/site_follower.h"
#include "outer/site_service.h"
#include "transport/tls_file_check.h"

namespace longhaul::app {

namespace {
struct SiteArgs {
  std::string config;
  std::string run_dir;
  std::vector<std::string> overrides;
  std::string log_level = "info";
  ProcessGroupArgs group;
};
void on_signal(int) {
  outer::SiteService::request_stop();
  outer::request_follower_stop();
}
}  // namespace

void register_site(CLI::App& app, CommandFn& run) {
  auto args = std::make_shared<SiteArgs>();
  auto* cmd = app.add_subcommand("site", "Run one DiLoCo site (trains its shard, syncs with the coordinator)");
  cmd->add_option("--config", args->config, "site TOML file")->required();
  cmd->add_option("--run-dir", args->run_dir,
                  "checkpoints, residual, metrics (default runs/<site id>); restart resumes");
  cmd->add_option("--set", args->overrides, "override a config key: section.key=value");
  cmd->add_option("--log-level", args->log_level, "debug|info|warn|error")->capture_default_str();
  add_process_group_options(cmd, args->group, "talks to the coordinator and hosts the rendezvous");
  cmd->callback([&run, args] {
    run = [args]() -> int {
      set_log_level(parse_log_level(args->log_level));
      auto cfg = outer::read_site_config(args->config, args->overrides);
      std::string dir = args->run_dir.empty() ? "runs/" + cfg.id : args->run_dir;
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      inner::ProcessGroupOptions po = process_group_options(args->group);
      // Rank 0 talks to the coordinator: its TLS files are checked before the run dir is touched.
      if (po.rank == 0) transport::check_tls_files(cfg.tls, args->config);
      if (po.world_size == 1) {
        outer::SiteService s(std::move(cfg), dir);
        return s.run();
      }
      po.backend = cfg.train.train.process_group_backend;
      auto pg = inner::SiteProcessGroup::connect(po, cfg.train.train.device_names());
      if (po.rank > 0) return outer::run_site_follower(cfg, dir, *pg);
      outer::FollowerLink followers(*pg,
                                    std::chrono::duration<double>(cfg.follower_ready_timeout_s));
      try {
        outer::SiteService s(std::move(cfg), dir, &followers);
        return s.run();
      } catch (const std::exception& e) {
        try {  // the followers fail with rank 0's reason instead of waiting for it
          followers.finish(e.what(), true);
        } catch (const std::exception&) {
        }
        throw;
      }
    };
  });
}

}  // namespace longhaul::app
