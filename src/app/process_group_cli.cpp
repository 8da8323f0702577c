#include "app/process_group_cli.h"

#include <chrono>

#include "common/error.h"

namespace longhaul::app {

void add_process_group_options(CLI::App* cmd, ProcessGroupArgs& args, const std::string& rank0_role) {
  cmd->add_option("--rank", args.rank, "this process's rank in a multi-process site (0 " + rank0_role + ")");
  cmd->add_option("--world-size", args.world_size, "processes in the site (default 1)");
  cmd->add_option("--rendezvous", args.rendezvous, "HOST:PORT of rank 0's rendezvous (needed when --world-size > 1)");
  cmd->add_option("--rank-timeout-ms", args.rank_timeout_ms,
                  "how long to wait for a missing or silent rank before failing, ms (default 60000)")
      ->check(CLI::Range(int64_t{100}, int64_t{86400000}));
}

inner::ProcessGroupOptions process_group_options(const ProcessGroupArgs& args) {
  if (args.world_size < 1 || args.rank < 0 || args.rank >= args.world_size)
    throw UserError("--rank " + std::to_string(args.rank) + " --world-size " + std::to_string(args.world_size) +
                    ": expected 0 <= rank < world size");
  if (args.world_size > 1 && args.rendezvous.empty())
    throw UserError("--world-size " + std::to_string(args.world_size) + " needs --rendezvous HOST:PORT");
  inner::ProcessGroupOptions o;
  o.rank = args.rank;
  o.world_size = args.world_size;
  o.timeout = std::chrono::milliseconds(args.rank_timeout_ms);
  if (!args.rendezvous.empty()) inner::parse_rendezvous(args.rendezvous, o);
  return o;
}

}  // namespace longhaul::app
