// PLACEHOLDER: replaced by the issue that builds `train`.
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "common/error.h"

namespace longhaul::app {

void register_train(CLI::App& app, CommandFn& run) {
  auto* cmd = app.add_subcommand("train", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([&run] { run = [] () -> int { throw UserError("'train' is not built yet"); }; });
}

}  // namespace longhaul::app
