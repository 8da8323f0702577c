// Live tuning of the coordinator: re-reads its config file when the file's mtime or size
// changes (polled) or when SIGHUP arrives. Only [sync] (SyncPolicy) and the access lists
// (coordinator.allowed_sites, coordinator.allowed_operators) may change mid-run: a new policy
// is returned to the caller, who applies it from the next round and logs it; new access lists
// wait in take_access_change() (applied at once: a site removed from the list loses its
// connection and cannot rejoin, one added can join the open round). Any other key that changed
// is refused with a logged message naming it (the old value stays in force), as is a file that
// no longer parses (the error is logged, nothing changes).
#pragma once

#include <atomic>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "outer/sync_policy.h"

namespace longhaul::outer {

struct AccessLists {
  std::vector<std::string> sites;      // coordinator.allowed_sites ([] = any site certificate)
  std::vector<std::string> operators;  // coordinator.allowed_operators
  bool operator==(const AccessLists&) const = default;
};

class ConfigWatcher {
 public:
  // effective_toml: the running config (CoordinatorConfig::effective_toml).
  ConfigWatcher(std::filesystem::path path, std::vector<std::string> overrides,
                std::string effective_toml, SyncPolicy current, AccessLists access = {});

  // Installs a SIGHUP handler that makes the next poll() reload.
  static void install_sighup_handler();

  // Cheap when nothing changed (one stat). Returns the new policy when [sync] changed.
  std::optional<SyncPolicy> poll();
  const SyncPolicy& current() const { return current_; }
  // The access lists read by a poll() since the last call, when they differ from the running ones.
  std::optional<AccessLists> take_access_change();
  int reloads() const { return reloads_; }

 private:
  std::filesystem::path path_;
  std::vector<std::string> overrides_;
  std::string effective_;
  SyncPolicy current_;
  AccessLists access_;
  bool access_changed_ = false;
  std::filesystem::file_time_type mtime_{};
  uintmax_t size_ = 0;
  int reloads_ = 0;
};

}  // namespace longhaul::outer
