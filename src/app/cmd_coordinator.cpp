// PLACEHOLDER: replaced by the issue that builds `coordinator`.
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "common/error.h"

namespace longhaul::app {

void register_coordinator(CLI::App& app, CommandFn& run) {
  auto* cmd = app.add_subcommand("coordinator", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([&run] { run = [] () -> int { throw UserError("'coordinator' is not built yet"); }; });
}

}  // namespace longhaul::app
