// An observer of the log (common/log.h): the coordinator's dashboard keeps the last warnings.
// Kept apart from log.h so that the many files including log.h do not depend on it.
#pragma once

#include <functional>
#include <string_view>

#include "common/log.h"

namespace longhaul {

// Called for every line at or above `min_level` that is logged, on the logging thread and under
// the logger's lock: it must be quick and must not log. Replaces the previous tap; an empty
// function removes it.
using LogTap = std::function<void(LogLevel level, std::string_view tag, std::string_view msg)>;
void set_log_tap(LogTap tap, LogLevel min_level = LogLevel::kWarn);

// "DEBUG", "INFO", "WARN", "ERROR".
const char* log_level_name(LogLevel level);

}  // namespace longhaul
