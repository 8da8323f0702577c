// What the dashboard shows of a run's past (`GET /v1/history`): the coordinator's round lines
// (the same JSON objects it appends to metrics.jsonl), the sync policy in force with its change
// log, and the last warnings. Thread-safe: the round loop and the log tap write, HTTP handlers
// read. Bounded: at most Limits::max_rounds rounds (the oldest are dropped and counted), a
// short policy log and warning ring, each warning truncated; so the JSON stays a few MiB at most
// however long the run. After a restart the rounds are refilled from the run dir's metrics.jsonl.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "outer/sync_policy.h"

namespace longhaul::outer {

// The [sync] policy as JSON (the same keys as coordinator.toml's [sync]).
nlohmann::json sync_policy_json(const SyncPolicy& p);

// Seconds since the Unix epoch (UTC), with sub-second precision: the "time" field of lines.
double unix_now_s();

struct RunHistoryLimits {
  size_t max_rounds = 5000;          // round lines kept (a line is ~300 bytes of JSON)
  size_t max_policy_changes = 200;   // entries of the policy change log kept
  size_t max_warnings = 50;          // last warnings kept
  size_t max_warning_chars = 600;    // longer warning texts are cut (with "…")
};

class RunHistory {
 public:
  using Limits = RunHistoryLimits;
  explicit RunHistory(Limits limits = {});

  // The run's identity and its start (Unix seconds; the init line's "time" when refilled).
  void set_run(const std::string& run_id, double started_unix_s);
  // One closed round: the coordinator's metrics.jsonl "round" line (fields kept as they are,
  // so fields added later reach the dashboard without change here). Needs an integer "round".
  void add_round(const nlohmann::json& line);
  // The policy in force from `round`; recorded only when it differs from the last one, with
  // the keys that changed ({"key": [old, new]}).
  void note_policy(int64_t round, const nlohmann::json& policy);
  // A warning or error log line (tag, message), stamped with the current time.
  void add_warning(std::string_view level, std::string_view tag, std::string_view message);

  // Refills from a metrics.jsonl: "init" gives the start time, "round" lines the rounds.
  // Unreadable or malformed lines are skipped (counted in "skipped_lines"). Returns the
  // number of round lines loaded.
  size_t load_jsonl(const std::filesystem::path& metrics_jsonl);

  // {"run_id", "started", "now", "rounds": [...rounds with round > since_round],
  //  "rounds_dropped", "policy": {...in force}, "policy_changes": [...], "warnings": [...]}
  nlohmann::json to_json(int64_t since_round = -1) const;

  size_t rounds() const;
  // The highest round held (-1: none).
  int64_t last_round() const;

 private:
  Limits limits_;
  mutable std::mutex mu_;
  std::string run_id_;
  double started_ = 0;
  std::deque<nlohmann::json> rounds_;
  int64_t rounds_dropped_ = 0;
  nlohmann::json policy_ = nullptr;
  std::deque<nlohmann::json> policy_changes_;
  std::deque<nlohmann::json> warnings_;
  int64_t warnings_total_ = 0;
  int64_t skipped_lines_ = 0;
};

}  // namespace longhaul::outer
