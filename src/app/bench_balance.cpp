// PLACEHOLDER: replaced by the issue that builds `bench_balance`.
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "common/error.h"

namespace longhaul::app {

void register_bench_balance(CLI::App& app, CommandFn& run) {
  auto* cmd = app.add_subcommand("balance", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([&run] { run = [] () -> int { throw UserError("'balance' is not built yet"); }; });
}

}  // namespace longhaul::app
