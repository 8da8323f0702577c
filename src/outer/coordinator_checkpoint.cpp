#include "outer/coordinator_checkpoint.h"

#include <xxhash.h>

#include <cstring>
#include <fstream>

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

void save_coordinator_checkpoint(const std::filesystem::path& path, const CoordinatorStateView& s,
                                 const std::function<void()>& midway) {
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
    part(s.theta_master.data(), s.theta_master.size_bytes());
    if (midway) midway();
    for (auto v : {s.theta_published, s.momentum}) part(v.data(), v.size_bytes());
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
  auto bad = [&](const std::string& why) {
    return DataError(path.string() + ": not a usable coordinator checkpoint: " + why);
  };
  // Streamed straight into the vectors (hashed as read): no whole-file buffer beside them.
  std::ifstream in(path, std::ios::binary);
  if (!in) throw bad("cannot open");
  const uint64_t size = std::filesystem::file_size(path);
  if (size < 32) throw bad("bad magic or too short");
  XXH64_state_t* h = XXH64_createState();
  XXH64_reset(h, 0);
  struct Free {
    XXH64_state_t* h;
    ~Free() { XXH64_freeState(h); }
  } free_h{h};
  uint64_t done = 0;
  auto read = [&](void* p, uint64_t n) {
    if (done + n > size - 8) throw bad("size does not match numel");
    if (!in.read(static_cast<char*>(p), static_cast<std::streamsize>(n))) throw bad("read failed (truncated?)");
    XXH64_update(h, p, n);
    done += n;
  };
  char head[24];
  read(head, 24);
  if (std::memcmp(head, kMagic, 8) != 0) throw bad("bad magic or too short");
  uint32_t version;
  std::memcpy(&version, head + 8, 4);
  if (version != kCoordinatorCheckpointVersion)
    throw bad("format version " + std::to_string(version) + ", this build reads " +
              std::to_string(kCoordinatorCheckpointVersion));
  uint64_t mlen;
  std::memcpy(&mlen, head + 16, 8);
  if (mlen > size - 32) throw bad("meta length out of range");
  std::string js(mlen, '\0');
  read(js.data(), mlen);
  CoordinatorState s;
  try {
    s.meta = nlohmann::json::parse(js);
  } catch (const std::exception& e) {
    throw bad(std::string("meta is not JSON: ") + e.what());
  }
  const uint64_t n = s.meta.value("numel", uint64_t{0});
  const bool has_m = s.meta.value("has_momentum", false);
  const uint64_t floats = (has_m ? 3 : 2) * n;
  if (n > (size - 32 - mlen) / sizeof(float) || 24 + mlen + floats * sizeof(float) + 8 != size)
    throw bad("size does not match numel");
  auto take = [&](std::vector<float>& v) {
    v.resize(n);
    read(v.data(), n * sizeof(float));
  };
  take(s.theta_master);
  take(s.theta_published);
  if (has_m) take(s.momentum);
  uint64_t sum;
  if (!in.read(reinterpret_cast<char*>(&sum), 8)) throw bad("read failed (truncated?)");
  if (XXH64_digest(h) != sum) throw bad("checksum mismatch (damaged file)");
  return s;
}

}  // namespace longhaul::outer
