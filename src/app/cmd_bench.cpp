#include <CLI/CLI.hpp>

#include "app/commands.h"

namespace longhaul::app {

void register_bench(CLI::App& app, CommandFn& run) {
  auto* bench = app.add_subcommand("bench", "microbenchmarks to size links and machines");
  bench->require_subcommand(1);
  register_bench_codec(*bench, run);
  register_bench_transport(*bench, run);
  register_bench_balance(*bench, run);
  register_bench_coordinator(*bench, run);
}

}  // namespace longhaul::app
