// `longhaul coordinator --config configs/coordinator.toml [--run-dir DIR] [--set k=v]...`
#include <CLI/CLI.hpp>

#include <csignal>

#include "app/commands.h"
#include "common/error.h"
#include "common/log.h"
#include "outer/coordinator.h"
#include "transport/tls_file_check.h"

namespace longhaul::app {

namespace {
struct CoordinatorArgs {
  std::string config;
  std::string run_dir = "runs/coordinator";
  std::vector<std::string> overrides;
  std::string log_level = "info";
};
void on_signal(int) { outer::Coordinator::request_stop(); }
}  // namespace

void register_coordinator(CLI::App& app, CommandFn& run) {
  auto args = std::make_shared<CoordinatorArgs>();
  auto* cmd = app.add_subcommand("coordinator", "Run the DiLoCo coordinator (θ, outer optimizer, rounds)");
  cmd->add_option("--config", args->config, "coordinator TOML file")->required();
  cmd->add_option("--run-dir", args->run_dir,
                  "checkpoint, metrics and port file; restarting on the same dir resumes")
      ->capture_default_str();
  cmd->add_option("--set", args->overrides, "override a config key: section.key=value");
  cmd->add_option("--log-level", args->log_level, "debug|info|warn|error")->capture_default_str();
  cmd->callback([&run, args] {
    run = [args]() -> int {
      set_log_level(parse_log_level(args->log_level));
      auto cfg = outer::read_coordinator_config(args->config, args->overrides);
      // Every file checked before the run dir is touched: a failed start leaves no state.
      transport::check_tls_files(cfg.tls, args->config);
      if (const auto w = transport::loopback_bind_warning(cfg.bind, cfg.tls.cert); !w.empty()) {
        LH_LOG(Warn, "coordinator") << w;
      }
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      outer::Coordinator c(std::move(cfg), args->config, args->overrides, args->run_dir);
      return c.run();
    };
  });
}

}  // namespace longhaul::app
