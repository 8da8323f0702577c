// The coordinator's checkpoint, written after every round to <run_dir>/coordinator.ckpt with
// AtomicFileWriter (temp file, fsync, rename): a crash leaves the previous complete file.
//
// Layout (little-endian):
//   offset 0   char[8]  magic "LHCOORD\1"
//          8   uint32   format version (kCoordinatorCheckpointVersion)
//         12   uint32   reserved (0)
//         16   uint64   M = length of the JSON meta block
//         24   M bytes  JSON meta (run_id, next_round, outer_steps, manifest_hash, numel,
//                       has_momentum, sites {id: {...}}, norms, model config, ...)
//     24 + M   floats   θ master [numel], θ published [numel], momentum [numel if has_momentum]
//        end   uint64   xxh64 (seed 0) of every preceding byte
// `next_round` is the round the coordinator runs next: every round < next_round has been
// applied exactly once, so a resumed coordinator drops uploads for those rounds as late.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

namespace longhaul::outer {

inline constexpr uint32_t kCoordinatorCheckpointVersion = 1;

struct CoordinatorState {
  nlohmann::json meta = nlohmann::json::object();  // see above; callers own its fields
  std::vector<float> theta_master;                 // the outer optimizer's θ
  std::vector<float> theta_published;              // what every site holds (bitwise)
  std::vector<float> momentum;                     // empty before the first outer step
};

// What save_coordinator_checkpoint writes, as views of the caller's vectors: the file is
// streamed from them (hashed as it goes), so saving costs no copy of θ.
struct CoordinatorStateView {
  nlohmann::json meta = nlohmann::json::object();
  std::span<const float> theta_master, theta_published, momentum;  // momentum may be empty
};

std::filesystem::path coordinator_checkpoint_path(const std::filesystem::path& run_dir);
// midway (if set) is called after θ master was written, before the rest (fault injection).
void save_coordinator_checkpoint(const std::filesystem::path& path, const CoordinatorStateView& s,
                                 const std::function<void()>& midway = {});
void save_coordinator_checkpoint(const std::filesystem::path& path, const CoordinatorState& s);
// nullopt when the file does not exist; DataError naming the file when it is damaged.
std::optional<CoordinatorState> load_coordinator_checkpoint(const std::filesystem::path& path);

}  // namespace longhaul::outer
