#include "site_rank_util.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <thread>

#include "test_support.h"

extern char** environ;

namespace longhaul::inner::testing {

namespace fs = std::filesystem;

namespace {
fs::path work_dir() {
  fs::path d = fs::temp_directory_path() / ("lh_pg_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
}  // namespace

Proc spawn_rank(const std::string& name, std::vector<std::string> args) {
  Proc p;
  p.out = work_dir() / (name + ".out");
  p.err = work_dir() / (name + ".err");
  std::string helper = LONGHAUL_SITE_RANK_HELPER;
  std::vector<char*> argv{helper.data()};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, p.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, p.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int rc = posix_spawn(&p.pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_EQ(rc, 0) << "spawn " << argv[0];
  return p;
}

void wait_for(Proc& p, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int st = 0;
    if (::waitpid(p.pid, &st, WNOHANG) == p.pid) {
      p.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, &st, 0);
      ADD_FAILURE() << "process " << p.pid << " hung past " << limit.count() << " s";
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<StepLine> steps_of(const Proc& p) {
  std::vector<StepLine> out;
  std::istringstream in(test_support::slurp(p.out));
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::string w, k1, k2, k3;
    int64_t s;
    StepLine l;
    if (ls >> w >> s >> k1 >> l.loss >> k2 >> l.hash >> k3 >> l.ranks && w == "step")
      out.push_back(l);
  }
  return out;
}

std::string backend_of(const Proc& p) {
  std::istringstream in(test_support::slurp(p.out));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("backend ", 0) == 0) return line.substr(8);
  return "";
}

std::vector<std::string> rank_args(int rank, int world, int port, int64_t steps,
                                   const std::string& slowdowns, int timeout_ms) {
  return {"--rank",       std::to_string(rank),
          "--world-size", std::to_string(world),
          "--rendezvous", "127.0.0.1:" + std::to_string(port),
          "--timeout-ms", std::to_string(timeout_ms),
          "--steps",      std::to_string(steps),
          "--batch",      "10",
          "--seed",       "4",
          "--slowdowns",  slowdowns};
}

}  // namespace longhaul::inner::testing
