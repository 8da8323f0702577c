// The run's metrics file: JSON Lines, one object per line, flushed after each line so that a
// crash loses at most the line being written.
//   {"event":"step","step":S,"loss":L,"lr":LR,"tokens":N,"tokens_per_s":R,"elapsed_s":E}
//     S: optimizer steps done (1-based), L: mean training loss of step S's micro-batches
//     (nats/token), LR: learning rate used by step S, N: training tokens consumed so far,
//     R: tokens/s over the wall time since the previous step line, E: wall seconds of the
//     run so far (evaluations and checkpoints included; continued across --resume).
//     With several devices or ranks (train.devices, --world-size) the line also has
//     "devices":{"devices":[labels],"split":[sequences per device],"rates":[seq/s per device],
//     "rank_split":[sequences per rank],...} (inner/device_group.h, to_json).
//   {"event":"eval","step":S,"val_loss":V}   V: mean validation loss (nats/token)
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

namespace longhaul::inner {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, lr = 0;
  int64_t tokens = 0;
  double tokens_per_s = 0, elapsed_s = 0;
  nlohmann::json devices;  // several devices/ranks: {"devices","split","rates",...}; omitted when null
};

class MetricsWriter {
 public:
  // Opens `path` for appending. When `truncate_after_step` >= 0 (a resumed run), first drops
  // every line whose "step" is greater (those steps are re-run), rewriting the file atomically.
  explicit MetricsWriter(std::filesystem::path path, int64_t truncate_after_step = -1);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  void step(const StepMetrics& m);
  void eval(int64_t step, double val_loss);
  const std::filesystem::path& path() const { return path_; }

 private:
  void write_line(const std::string& line);
  std::filesystem::path path_;
  std::FILE* f_ = nullptr;
};

}  // namespace longhaul::inner
