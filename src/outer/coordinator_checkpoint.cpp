#include "outer/coordinator_checkpoint.h"

#include <xxhash.h>

#include <cstring>

#include "common/atomic_file.h"
#include "common/error.h"

namespace longhaul::outer {

namespace {
constexpr char kMagic[8] = {'L', 'H', 'C', 'O', 'O', 'R', 'D', '\1'};

template <typename T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
}  // namespace

std::filesystem::path coordinator_checkpoint_path(const std::filesystem::path& run_dir) {
  return run_dir / "coordinator.ckpt";
}

void save_coordinator_checkpoint(const std::filesystem::path& path, const CoordinatorStateView& s) {
  LH_CHECK_EQ(s.theta_master.size(), s.theta_published.size());
  LH_CHECK(s.momentum.empty() || s.momentum.size() == s.theta_master.size());
  nlohmann::json meta = s.meta;
  meta["numel"] = s.theta_master.size();
  meta["has_momentum"] = !s.momentum.empty();
  std::string head;
  const std::string js = meta.dump();
  head.append(kMagic, 8);
  put<uint32_t>(head, kCoordinatorCheckpointVersion);
  put<uint32_t>(head, 0);
  put<uint64_t>(head, js.size());
  head += js;
  // Streamed: hash and write each part in turn (XXH64 of every preceding byte, as before).
  XXH64_state_t* h = XXH64_createState();
  XXH64_reset(h, 0);
  AtomicFileWriter w(path);
  auto part = [&](const void* p, std::size_t n) {
    XXH64_update(h, p, n);
    w.write(p, n);
  };
  try {
    part(head.data(), head.size());
    for (auto v : {s.theta_master, s.theta_published, s.momentum}) part(v.data(), v.size_bytes());
  } catch (...) {
    XXH64_freeState(h);
    throw;
  }
  const uint64_t sum = XXH64_digest(h);
  XXH64_freeState(h);
  w.write(&sum, sizeof(sum));
  w.commit();
}

void save_coordinator_checkpoint(const std::filesystem::path& path, const CoordinatorState& s) {
  save_coordinator_checkpoint(path, CoordinatorStateView{s.meta, s.theta_master, s.theta_published, s.momentum});
}

std::optional<CoordinatorState> load_coordinator_checkpoint(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::string in = read_file(path);
  auto bad = [&](const std::string& why) {
    return DataError(path.string() + ": not a usable coordinator checkpoint: " + why);
  };
  if (in.size() < 32 || std::memcmp(in.data(), kMagic, 8) != 0) throw bad("bad magic or too short");
  uint32_t version;
  std::memcpy(&version, in.data() + 8, 4);
  if (version != kCoordinatorCheckpointVersion)
    throw bad("format version " + std::to_string(version) + ", this build reads " +
              std::to_string(kCoordinatorCheckpointVersion));
  uint64_t sum;
  std::memcpy(&sum, in.data() + in.size() - 8, 8);
  if (XXH64(in.data(), in.size() - 8, 0) != sum) throw bad("checksum mismatch (damaged file)");
  uint64_t mlen;
  std::memcpy(&mlen, in.data() + 16, 8);
  if (mlen > in.size() - 32) throw bad("meta length out of range");
  CoordinatorState s;
  try {
    s.meta = nlohmann::json::parse(in.substr(24, mlen));
  } catch (const std::exception& e) {
    throw bad(std::string("meta is not JSON: ") + e.what());
  }
  uint64_t n = s.meta.value("numel", uint64_t{0});
  bool has_m = s.meta.value("has_momentum", false);
  uint64_t floats = (has_m ? 3 : 2) * n;
  if (24 + mlen + floats * sizeof(float) + 8 != in.size()) throw bad("size does not match numel");
  const char* p = in.data() + 24 + mlen;
  auto take = [&](std::vector<float>& v) {
    v.resize(n);
    std::memcpy(v.data(), p, n * sizeof(float));
    p += n * sizeof(float);
  };
  take(s.theta_master);
  take(s.theta_published);
  if (has_m) take(s.momentum);
  return s;
}

}  // namespace longhaul::outer
