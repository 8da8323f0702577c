// Shared helpers for the multi-process site tests: spawn site_rank_helper ranks (real
// processes joined over loopback), wait for them with a bound, read what they printed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace longhaul::inner::testing {

struct Proc {
  pid_t pid = -1;
  std::filesystem::path out, err;  // its stdout and stderr
  int status = -1;                 // exit status (128 + signal when killed)
};

// Starts site_rank_helper with `args`; stdout/stderr go to <scratch>/<name>.out/.err.
Proc spawn_rank(const std::string& name, std::vector<std::string> args);
// Waits at most `limit`; kills the process and fails the test past it (a hang is a failure).
void wait_for(Proc& p, std::chrono::seconds limit = std::chrono::seconds(60));

// One "step <s> loss <loss> hash <hex> ranks <a:b>" line of the helper.
struct StepLine {
  double loss;
  std::string hash, ranks;
};
std::vector<StepLine> steps_of(const Proc& p);
// The group's backend the helper printed ("backend <name>"), or "" if none.
std::string backend_of(const Proc& p);

// The helper's arguments for one rank of a `world`-rank site on 127.0.0.1:`port`.
std::vector<std::string> rank_args(int rank, int world, int port, int64_t steps,
                                   const std::string& slowdowns, int timeout_ms = 20000);

}  // namespace longhaul::inner::testing
