// PLACEHOLDER: replaced by the issue that builds `certs`.
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "common/error.h"

namespace longhaul::app {

void register_certs(CLI::App& app, CommandFn& run) {
  auto* cmd = app.add_subcommand("certs", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([&run] { run = [] () -> int { throw UserError("'certs' is not built yet"); }; });
}

}  // namespace longhaul::app
