// Subcommand registry of the `longhaul` binary. Each register_* adds one CLI11 subcommand
// (defined in its own cmd_*.cpp / bench_*.cpp) whose parse callback stores the action to run
// in `run`; main() runs it and maps errors to exit codes (UserError -> 2, others -> 1).
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace longhaul::app {

using CommandFn = std::function<int()>;

void register_train(CLI::App& app, CommandFn& run);
void register_coordinator(CLI::App& app, CommandFn& run);
void register_site(CLI::App& app, CommandFn& run);
void register_certs(CLI::App& app, CommandFn& run);
void register_bench(CLI::App& app, CommandFn& run);
void register_checkpoint(CLI::App& app, CommandFn& run);
void register_status(CLI::App& app, CommandFn& run);

// `longhaul bench <what>`: one file each.
void register_bench_codec(CLI::App& bench, CommandFn& run);
void register_bench_transport(CLI::App& bench, CommandFn& run);
void register_bench_balance(CLI::App& bench, CommandFn& run);
void register_bench_coordinator(CLI::App& bench, CommandFn& run);

}  // namespace longhaul::app
