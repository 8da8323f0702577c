// PLACEHOLDER: replaced by the issue that builds `bench_transport`.
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "common/error.h"

namespace longhaul::app {

void register_bench_transport(CLI::App& app, CommandFn& run) {
  auto* cmd = app.add_subcommand("transport", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([&run] { run = [] () -> int { throw UserError("'transport' is not built yet"); }; });
}

}  // namespace longhaul::app
