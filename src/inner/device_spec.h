// One entry of a site's `devices = [...]` list: a worker that holds one model replica.
//
//   devices = [{ device = "cpu", threads = 1, slowdown = 1.0, max_micro_batch = 8 },
//              { device = "cuda:0", max_micro_batch = 32 }]
//
// Fields (every one optional, defaults below):
//   device          "cpu" | "cuda" | "cuda:N"             (several "cpu" entries are allowed)
//   threads         intra-op threads of a cpu worker, [1, 256]; ignored for cuda
//   slowdown        emulated speed factor >= 1 (testing/benchmark aid, see inner/slowdown.h)
//   max_micro_batch sequences per forward/backward on this device (its memory cap), [1, 65536]
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace longhaul {
class ConfigReader;
}

namespace longhaul::inner {

struct DeviceSpec {
  std::string device = "cpu";
  int threads = 1;
  double slowdown = 1.0;
  int64_t max_micro_batch = 8;
};

// Reads the array of tables at `key` (e.g. "train.devices"). Absent -> `def`. Every bad entry
// throws ConfigError naming file, "key[i].field", the value and what was expected; unknown
// fields inside an entry are rejected too.
// `default_max_micro_batch` is an entry's max_micro_batch when it names none.
std::vector<DeviceSpec> read_device_specs(ConfigReader& cfg, std::string_view key,
                                          std::vector<DeviceSpec> def,
                                          int64_t default_max_micro_batch = 8);

// "cpu#1(threads=1,slowdown=2)" style label for logs and metrics; `index` is the list position.
std::string device_label(const DeviceSpec& spec, size_t index);

}  // namespace longhaul::inner
