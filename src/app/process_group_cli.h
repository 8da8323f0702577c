// The options `longhaul train` and `longhaul site` share for a site of several processes
// (README "Mixed-device and multi-process sites"): --rank, --world-size, --rendezvous,
// --rank-timeout-ms.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "inner/process_group.h"

namespace longhaul::app {

struct ProcessGroupArgs {
  int rank = 0;
  int world_size = 1;
  std::string rendezvous;            // HOST:PORT of rank 0's store; required when world_size > 1
  int64_t rank_timeout_ms = 60000;   // rendezvous and every collective
};

// `rank0_role` completes "--rank: ... (0 <rank0_role>)" in the help text.
void add_process_group_options(CLI::App* cmd, ProcessGroupArgs& args, const std::string& rank0_role);

// Checks the combination (UserError naming the flags) and returns the group options, with the
// rendezvous parsed when given; the backend is left at its default for the caller to set.
inner::ProcessGroupOptions process_group_options(const ProcessGroupArgs& args);

}  // namespace longhaul::app
