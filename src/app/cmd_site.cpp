// PLACEHOLDER: replaced by the issue that builds `site`.
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "common/error.h"

namespace longhaul::app {

void register_site(CLI::App& app, CommandFn& run) {
  auto* cmd = app.add_subcommand("site", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([&run] { run = [] () -> int { throw UserError("'site' is not built yet"); }; });
}

}  // namespace longhaul::app
