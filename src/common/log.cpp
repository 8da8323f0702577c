#include "common/log.h"
#include "common/log_tap.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "common/error.h"

namespace longhaul {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;
LogTap g_tap;                    // guarded by g_mu
LogLevel g_tap_level = LogLevel::kWarn;  // guarded by g_mu
const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO ";
    case LogLevel::kWarn: return "WARN ";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

LogLevel parse_log_level(std::string_view s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "info") return LogLevel::kInfo;
  if (s == "warn") return LogLevel::kWarn;
  if (s == "error") return LogLevel::kError;
  throw UserError("log level '" + std::string(s) + "': expected one of debug, info, warn, error");
}

void log_line(LogLevel level, std::string_view tag, std::string_view msg) {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t t = system_clock::to_time_t(now);
  int ms = static_cast<int>(duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(g_mu);
  std::fprintf(stderr, "%s.%03dZ %s [%.*s] %.*s\n", ts, ms, level_name(level),
               static_cast<int>(tag.size()), tag.data(), static_cast<int>(msg.size()), msg.data());
  std::fflush(stderr);
  if (g_tap && level >= g_tap_level) g_tap(level, tag, msg);
}

void set_log_tap(LogTap tap, LogLevel min_level) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_tap = std::move(tap);
  g_tap_level = min_level;
}

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarn: return "WARN";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}

}  // namespace longhaul
