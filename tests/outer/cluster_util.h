// Test helpers for real multi-process runs on loopback: a temp run tree with a CA and
// certificates, a small synthetic corpus, coordinator/site configs for a tiny model, and the
// real `longhaul` binary (LONGHAUL_BINARY) started as child processes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace longhaul::testing {

namespace fs = std::filesystem;

// A child process running `longhaul <args>` with stdout+stderr into `log`.
class Process {
 public:
  Process() = default;
  Process(std::vector<std::string> args, fs::path log);
  ~Process();  // SIGKILLs a still-running child
  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;

  bool running();
  void signal(int sig);
  // Waits for exit; returns the exit status (128 + signal if killed) or -1 on timeout.
  int wait(std::chrono::seconds timeout);
  pid_t pid() const { return pid_; }
  const fs::path& log() const { return log_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  fs::path log_;
};

struct ClusterOptions {
  int rounds = 4;
  int inner_steps = 4;
  int min_sites = 2;
  double deadline_s = 60;
  std::string upload_encoding = "int8";
  std::string download_encoding = "fp32";
  int start_sites = 3;
  std::vector<std::string> sites = {"site-a", "site-b", "site-c"};
  std::vector<std::string> coordinator_overrides;  // extra --set key=value for the coordinator
};

// A run tree under a fresh temp directory: certs/, corpus/, configs, run dirs.
class Cluster {
 public:
  explicit Cluster(const std::string& name, ClusterOptions o = {});
  ~Cluster();

  const fs::path& root() const { return root_; }
  fs::path coordinator_config() const { return root_ / "coordinator.toml"; }
  fs::path coordinator_dir() const { return root_ / "coordinator"; }
  fs::path site_dir(const std::string& s) const { return root_ / s; }

  // Starts the coordinator (port 0 unless `port` given) and waits for its port file.
  Process start_coordinator(int port = 0, const std::string& log_suffix = "");
  int port() const { return port_; }
  Process start_site(const std::string& site, const std::string& log_suffix = "");
  // Every site of options().sites, in that order (after start_coordinator()).
  std::vector<Process> start_sites();
  // The same with extra command-line arguments (e.g. --rank/--world-size/--rendezvous).
  Process start_site(const std::string& site, const std::string& log_suffix,
                     const std::vector<std::string>& extra_args);

  // Lines of a metrics.jsonl with "event" == event.
  static std::vector<nlohmann::json> read_events(const fs::path& jsonl, const std::string& event);
  std::vector<nlohmann::json> coordinator_rounds() const;
  std::vector<nlohmann::json> site_rounds(const std::string& s) const;
  // Rewrites the coordinator's config file with the first `from` replaced by `to` (a live
  // edit, as an operator would make it); false when `from` is not in the file.
  bool edit_coordinator_config(const std::string& from, const std::string& to) const;
  // Waits until the coordinator has logged `n` round lines; false on timeout.
  bool wait_for_rounds(size_t n, std::chrono::seconds timeout) const;
  static std::string tail(const fs::path& log, size_t bytes = 4000);
  // Waits (up to `timeout`) until a site's log shows it training a round: a ": training " line
  // after its last "uploading". False on timeout.
  static bool wait_until_training(const Process& site, std::chrono::seconds timeout);
  // Restarts `site` (log suffix `suffix`) while every other site of `sites` is paused
  // (SIGSTOP), and resumes them once it trains again: small rounds close every few tens of ms,
  // so otherwise the run may end before the restarted process has loaded and rejoined. False
  // when it did not train within `timeout` (the others are resumed either way).
  bool restart_site_holding_the_others(std::map<std::string, Process>& sites, const std::string& site,
                                       const std::string& suffix, std::chrono::seconds timeout);

  const ClusterOptions& options() const { return opts_; }

 private:
  fs::path root_;
  ClusterOptions opts_;
  int port_ = 0;
};

// Every site's θ hash after round r equals the coordinator's published hash for round r, with
// no hash mismatch; every_round: each site also lists every round.
void expect_hashes_agree(const Cluster& c, const std::vector<std::string>& sites, bool every_round);

}  // namespace longhaul::testing
