// Minimal thread-safe logger to stderr: "2026-11-25T10:00:00.123Z INFO  [tag] message".
// Usage: LH_LOG(Info, "transport") << "peer " << id << " refused: " << why;
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace longhaul {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug" | "info" | "warn" | "error"; throws UserError otherwise.
LogLevel parse_log_level(std::string_view s);
void log_line(LogLevel level, std::string_view tag, std::string_view msg);

class LogStream {
 public:
  LogStream(LogLevel level, std::string_view tag) : level_(level), tag_(tag) {}
  ~LogStream() { log_line(level_, tag_, os_.str()); }
  template <typename T>
  LogStream& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  LogLevel level_;
  std::string tag_;
  std::ostringstream os_;
};

}  // namespace longhaul

#define LH_LOG(LEVEL, TAG)                                              \
  if (::longhaul::LogLevel::k##LEVEL < ::longhaul::log_level()) {       \
  } else                                                                \
    ::longhaul::LogStream(::longhaul::LogLevel::k##LEVEL, TAG)
