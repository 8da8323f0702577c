#include "outer/config_watcher.h"

#include <csignal>

#include "common/log.h"
#include "outer/coordinator_config.h"

namespace longhaul::outer {

namespace {
std::atomic<bool> g_sighup{false};
void on_sighup(int) { g_sighup.store(true); }
}  // namespace

void ConfigWatcher::install_sighup_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sighup;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGHUP, &sa, nullptr);
}

ConfigWatcher::ConfigWatcher(std::filesystem::path path, std::vector<std::string> overrides,
                             std::string effective_toml, SyncPolicy current, AccessLists access)
    : path_(std::move(path)),
      overrides_(std::move(overrides)),
      effective_(std::move(effective_toml)),
      current_(std::move(current)),
      access_(std::move(access)) {
  std::error_code ec;
  mtime_ = std::filesystem::last_write_time(path_, ec);
  size_ = std::filesystem::file_size(path_, ec);
}

std::optional<SyncPolicy> ConfigWatcher::poll() {
  std::error_code ec1, ec2;
  auto mtime = std::filesystem::last_write_time(path_, ec1);
  auto size = std::filesystem::file_size(path_, ec2);
  bool hup = g_sighup.exchange(false);
  bool changed = !ec1 && !ec2 && (mtime != mtime_ || size != size_);
  if (!hup && !changed) return std::nullopt;
  mtime_ = mtime;
  size_ = size;
  ++reloads_;
  LH_LOG(Info, "config") << "re-reading " << path_.string() << (hup ? " (SIGHUP)" : " (file changed)");
  CoordinatorConfig fresh;
  try {
    fresh = read_coordinator_config(path_, overrides_);
  } catch (const std::exception& e) {
    LH_LOG(Error, "config") << "reload refused, keeping the running config: " << e.what();
    return std::nullopt;
  }
  for (const auto& key : fixed_keys_changed(effective_, fresh.effective_toml))
    LH_LOG(Warn, "config") << "key '" << key
                           << "' changed in the file but cannot change mid-run: ignored "
                              "(restart the coordinator to change it; only [sync] keys are live)";
  if (AccessLists a{fresh.allowed_sites, fresh.allowed_operators}; !(a == access_)) {
    LH_LOG(Info, "config") << "access lists change, effective now: " << a.sites.size() << " allowed sites, "
                           << a.operators.size() << " allowed operators ([] = any certificate from the CA)";
    access_ = std::move(a);
    access_changed_ = true;
  }
  if (fresh.sync == current_) {
    LH_LOG(Info, "config") << "no [sync] change";
    return std::nullopt;
  }
  LH_LOG(Info, "config") << "sync policy change, effective next round: "
                         << describe_change(current_, fresh.sync);
  current_ = fresh.sync;
  return current_;
}

std::optional<AccessLists> ConfigWatcher::take_access_change() {
  if (!access_changed_) return std::nullopt;
  access_changed_ = false;
  return access_;
}

}  // namespace longhaul::outer
