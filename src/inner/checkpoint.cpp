#include "inner/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <regex>

#include "common/atomic_file.h"
#include "common/error.h"
#include "inner/flat_params.h"

namespace longhaul::inner {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'L', 'H', 'C', 'K', 'P', 'T', '\0', '\1'};
constexpr char kTrailerMagic[8] = {'L', 'H', 'C', 'K', 'E', 'N', 'D', '\0'};
constexpr size_t kHeaderBytes = 32;
constexpr size_t kTrailerBytes = 24;
constexpr uint64_t kMaxMetaBytes = 16ull << 20;  // cap on the JSON meta block
constexpr size_t kChunk = 1 << 20;              // streaming read size, bytes

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <typename T>
T get(const char* in) {
  T v;
  std::memcpy(&v, in, sizeof v);
  return v;
}

nlohmann::json meta_to_json(const CheckpointMeta& m) {
  return {{"step", m.step},
          {"tokens", m.tokens},
          {"train_seconds", m.train_seconds},
          {"sampler", {{"seed", m.sampler.seed}, {"draws", m.sampler.draws}}},
          {"model", m.model.to_json()},
          {"manifest_hash", m.manifest_hash},
          {"extra", m.extra},
          {"optimizer_shard", m.optimizer_shard}};
}

// A checkpoint file opened for reading: header and meta parsed, payload located (not read).
struct Parsed {
  CheckpointMeta meta;
  uint64_t payload_off = 0, payload_len = 0;
  uint64_t payload_xxh3 = 0;  // checksum of the payload (the zip reader skips CRCs)
};

struct File {
  int fd = -1;
  explicit File(const fs::path& p) : fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd < 0) throw UserError(p.string() + ": cannot open: " + std::strerror(errno));
  }
  ~File() { ::close(fd); }
  // Exactly n bytes at pos, or fewer at the end of the file.
  size_t read_at(uint64_t pos, void* buf, size_t n) const {
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd, static_cast<char*>(buf) + done, n - done, static_cast<off_t>(pos + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      done += static_cast<size_t>(r);
    }
    return done;
  }
  uint64_t size() const {
    struct stat st {};
    return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  }
};

Parsed parse(const fs::path& path, const File& f) {
  const std::string where = path.string() + ": ";
  const uint64_t size = f.size();
  char header[kHeaderBytes];
  if (f.read_at(0, header, kHeaderBytes) != kHeaderBytes || std::memcmp(header, kMagic, 8) != 0)
    throw DataError(where + "not a Longhaul checkpoint (bad magic)");
  const auto version = get<uint32_t>(header + 8);
  if (version != 1 && version != kCheckpointVersion)
    throw DataError(where + "checkpoint format version " + std::to_string(version) +
                    ", this build reads versions 1 and " + std::to_string(kCheckpointVersion));
  const auto meta_len = get<uint64_t>(header + 16);
  Parsed p;
  p.payload_off = kHeaderBytes + meta_len;
  const uint64_t tail = version == 1 ? 0 : kTrailerBytes;
  bool ok = meta_len <= kMaxMetaBytes && p.payload_off + tail <= size;
  if (ok && version == 1) {
    p.payload_len = get<uint64_t>(header + 24);
    ok = p.payload_off + p.payload_len == size;
  } else if (ok) {
    char trailer[kTrailerBytes];
    ok = f.read_at(size - kTrailerBytes, trailer, kTrailerBytes) == kTrailerBytes &&
         std::memcmp(trailer + 16, kTrailerMagic, 8) == 0;
    p.payload_len = get<uint64_t>(trailer);
    p.payload_xxh3 = get<uint64_t>(trailer + 8);
    ok = ok && p.payload_off + p.payload_len + kTrailerBytes == size;
  }
  if (!ok)
    throw DataError(where + "checkpoint is truncated or damaged (header and trailer disagree with the " +
                    std::to_string(size) + "-byte file)");
  std::string meta_text(meta_len, '\0');
  if (f.read_at(kHeaderBytes, meta_text.data(), meta_len) != meta_len)
    throw DataError(where + "checkpoint is truncated (meta block)");
  try {
    auto j = nlohmann::json::parse(meta_text);
    p.meta.step = j.at("step");
    p.meta.tokens = j.at("tokens");
    p.meta.train_seconds = j.at("train_seconds");
    p.meta.sampler.seed = j.at("sampler").at("seed");
    p.meta.sampler.draws = j.at("sampler").at("draws");
    p.meta.model = GptConfig::from_json(j.at("model"));
    p.meta.manifest_hash = j.at("manifest_hash");
    p.meta.extra = j.at("extra");
    p.meta.optimizer_shard = j.value("optimizer_shard", nlohmann::json());
    if (version == 1) p.payload_xxh3 = j.at("payload_xxh3");
  } catch (const std::exception& e) {
    throw DataError(where + "bad checkpoint meta: " + e.what());
  }
  return p;
}

// Streams the payload through XXH3 (1 MiB at a time) and compares with the recorded checksum.
void verify_payload(const fs::path& path, const File& f, const Parsed& p) {
  XXH3_state_t* st = XXH3_createState();
  LH_CHECK(st != nullptr, "XXH3_createState failed");
  XXH3_64bits_reset(st);
  std::vector<char> buf(kChunk);
  for (uint64_t done = 0; done < p.payload_len;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, p.payload_len - done));
    if (f.read_at(p.payload_off + done, buf.data(), n) != n) break;
    XXH3_64bits_update(st, buf.data(), n);
    done += n;
  }
  const uint64_t digest = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  if (digest != p.payload_xxh3)
    throw DataError(path.string() + ": checkpoint payload checksum mismatch (the file is damaged)");
}

std::string shard_text(const nlohmann::json& j) { return j.is_null() ? "unsharded" : j.dump(); }

}  // namespace

void write_checkpoint(const fs::path& path, const CheckpointMeta& meta, torch::nn::Module& model,
                      torch::optim::Optimizer& optimizer, const CheckpointBlobs& blobs) {
  torch::serialize::OutputArchive archive, model_ar, optim_ar;
  model.save(model_ar);
  optimizer.save(optim_ar);
  archive.write("model", model_ar);
  archive.write("optimizer", optim_ar);
  for (const auto& [name, t] : blobs) archive.write("blob." + name, t.device().is_cpu() ? t : t.cpu());
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    archive.write("rng_cpu", gen.get_state());
  }
  const std::string meta_text = meta_to_json(meta).dump();
  std::string header(kMagic, 8);
  put<uint32_t>(header, kCheckpointVersion);
  put<uint32_t>(header, 0);
  put<uint64_t>(header, meta_text.size());
  put<uint64_t>(header, 0);
  fs::create_directories(path.parent_path().empty() ? fs::path(".") : path.parent_path());
  AtomicFileWriter w(path);
  w.write(header.data(), header.size());
  w.write(meta_text.data(), meta_text.size());
  // The payload goes straight to the file, hashed on the way.
  XXH3_state_t* st = XXH3_createState();
  LH_CHECK(st != nullptr, "XXH3_createState failed");
  XXH3_64bits_reset(st);
  uint64_t payload_len = 0;
  try {
    archive.save_to([&](const void* data, size_t n) -> size_t {
      w.write(data, n);
      XXH3_64bits_update(st, data, n);
      payload_len += n;
      return n;
    });
  } catch (...) {
    XXH3_freeState(st);
    throw;
  }
  const uint64_t digest = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  std::string trailer;
  put<uint64_t>(trailer, payload_len);
  put<uint64_t>(trailer, digest);
  trailer.append(kTrailerMagic, 8);
  w.write(trailer.data(), trailer.size());
  w.commit();
}

CheckpointMeta read_checkpoint_meta(const fs::path& path) {
  File f(path);
  return parse(path, f).meta;
}

CheckpointMeta read_checkpoint(const fs::path& path, torch::nn::Module& model,
                               torch::optim::Optimizer& optimizer, const GptConfig& expected,
                               const torch::Device& device, const nlohmann::json& expected_shard,
                               CheckpointBlobs* blobs) {
  File f(path);
  Parsed p = parse(path, f);
  if (!(p.meta.model == expected))
    throw DataError(path.string() + ": checkpoint was written for model " +
                    p.meta.model.to_json().dump() + " but the config says " +
                    expected.to_json().dump() + " (use a fresh run dir or the same [model])");
  if (p.meta.manifest_hash != param_manifest(model).hash())
    throw DataError(path.string() + ": checkpoint parameter manifest differs from this model's");
  if (p.meta.optimizer_shard != expected_shard)
    throw DataError(path.string() + ": checkpoint's optimizer state is " + shard_text(p.meta.optimizer_shard) +
                    " but this process runs " + shard_text(expected_shard) +
                    " (resume with the same train.shard_optimizer, world size and rank, or use a fresh run dir)");
  verify_payload(path, f, p);
  try {
    torch::serialize::InputArchive archive, model_ar, optim_ar;
    archive.load_from(
        [&](uint64_t pos, void* buf, size_t n) -> size_t {
          if (pos >= p.payload_len) return 0;
          n = static_cast<size_t>(std::min<uint64_t>(n, p.payload_len - pos));
          return f.read_at(p.payload_off + pos, buf, n);
        },
        [&]() -> size_t { return static_cast<size_t>(p.payload_len); }, device);
    archive.read("model", model_ar);
    archive.read("optimizer", optim_ar);
    model.load(model_ar);
    optimizer.load(optim_ar);
    torch::Tensor rng;
    archive.read("rng_cpu", rng);
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng.to(torch::kCPU));
    if (blobs)
      for (auto& [name, t] : *blobs) {
        t = torch::Tensor();
        torch::Tensor v;
        if (archive.try_read("blob." + name, v)) t = v.to(torch::kCPU);
      }
  } catch (const c10::Error& e) {
    throw DataError(path.string() + ": damaged checkpoint payload: " + e.what_without_backtrace());
  }
  return p.meta;
}

fs::path checkpoint_path(const fs::path& run_dir, int64_t step) {
  char name[40];
  std::snprintf(name, sizeof name, "step-%08ld.ckpt", static_cast<long>(step));
  return run_dir / "checkpoints" / name;
}

namespace {
std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  const fs::path dir = run_dir / "checkpoints";
  if (!fs::is_directory(dir)) return out;
  static const std::regex kName(R"(step-(\d{8,})\.ckpt)");
  for (const auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    std::string name = e.path().filename().string();
    if (e.is_regular_file() && std::regex_match(name, m, kName))
      out.emplace_back(std::stoll(m[1].str()), e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::optional<fs::path> latest_checkpoint(const fs::path& run_dir) {
  auto all = list_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

void prune_checkpoints(const fs::path& run_dir, int64_t keep) {
  auto all = list_checkpoints(run_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove(all[i].second);
}

}  // namespace longhaul::inner
