#include "inner/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <regex>

#include "common/atomic_file.h"
#include "common/error.h"
#include "inner/flat_params.h"

namespace longhaul::inner {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'L', 'H', 'C', 'K', 'P', 'T', '\0', '\1'};
constexpr size_t kHeaderBytes = 32;
constexpr uint64_t kMaxMetaBytes = 16ull << 20;  // cap on the JSON meta block

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <typename T>
T get(const std::string& in, size_t off) {
  T v;
  std::memcpy(&v, in.data() + off, sizeof v);
  return v;
}

nlohmann::json meta_to_json(const CheckpointMeta& m) {
  return {{"step", m.step},
          {"tokens", m.tokens},
          {"train_seconds", m.train_seconds},
          {"sampler", {{"seed", m.sampler.seed}, {"draws", m.sampler.draws}}},
          {"model", m.model.to_json()},
          {"manifest_hash", m.manifest_hash},
          {"extra", m.extra}};
}

// Parses the header; returns (meta, payload offset, payload size).
struct Parsed {
  CheckpointMeta meta;
  size_t payload_off = 0, payload_len = 0;
  uint64_t payload_xxh3 = 0;  // checksum of the payload (the zip reader skips CRCs)
};

Parsed parse(const fs::path& path, const std::string& bytes) {
  const std::string where = path.string() + ": ";
  if (bytes.size() < kHeaderBytes || std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw DataError(where + "not a Longhaul checkpoint (bad magic)");
  auto version = get<uint32_t>(bytes, 8);
  if (version != kCheckpointVersion)
    throw DataError(where + "checkpoint format version " + std::to_string(version) +
                    ", this build reads version " + std::to_string(kCheckpointVersion));
  auto meta_len = get<uint64_t>(bytes, 16), payload_len = get<uint64_t>(bytes, 24);
  if (meta_len > kMaxMetaBytes || kHeaderBytes + meta_len + payload_len != bytes.size())
    throw DataError(where + "checkpoint is truncated or damaged (header says " +
                    std::to_string(kHeaderBytes + meta_len + payload_len) + " bytes, file has " +
                    std::to_string(bytes.size()) + ")");
  Parsed p;
  try {
    auto j = nlohmann::json::parse(bytes.substr(kHeaderBytes, meta_len));
    p.meta.step = j.at("step");
    p.meta.tokens = j.at("tokens");
    p.meta.train_seconds = j.at("train_seconds");
    p.meta.sampler.seed = j.at("sampler").at("seed");
    p.meta.sampler.draws = j.at("sampler").at("draws");
    p.meta.model = GptConfig::from_json(j.at("model"));
    p.meta.manifest_hash = j.at("manifest_hash");
    p.meta.extra = j.at("extra");
    p.payload_xxh3 = j.at("payload_xxh3");
  } catch (const std::exception& e) {
    throw DataError(where + "bad checkpoint meta: " + e.what());
  }
  p.payload_off = kHeaderBytes + meta_len;
  p.payload_len = payload_len;
  if (XXH3_64bits(bytes.data() + p.payload_off, p.payload_len) != p.payload_xxh3)
    throw DataError(where + "checkpoint payload checksum mismatch (the file is damaged)");
  return p;
}

}  // namespace

void write_checkpoint(const fs::path& path, const CheckpointMeta& meta, torch::nn::Module& model,
                      torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive, model_ar, optim_ar;
  model.save(model_ar);
  optimizer.save(optim_ar);
  archive.write("model", model_ar);
  archive.write("optimizer", optim_ar);
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    archive.write("rng_cpu", gen.get_state());
  }
  std::string payload;
  archive.save_to([&](const void* data, size_t n) -> size_t {
    payload.append(static_cast<const char*>(data), n);
    return n;
  });
  auto meta_json = meta_to_json(meta);
  meta_json["payload_xxh3"] = XXH3_64bits(payload.data(), payload.size());
  std::string meta_text = meta_json.dump();
  std::string header(kMagic, 8);
  put<uint32_t>(header, kCheckpointVersion);
  put<uint32_t>(header, 0);
  put<uint64_t>(header, meta_text.size());
  put<uint64_t>(header, payload.size());
  fs::create_directories(path.parent_path().empty() ? fs::path(".") : path.parent_path());
  AtomicFileWriter w(path);
  w.write(header.data(), header.size());
  w.write(meta_text.data(), meta_text.size());
  w.write(payload.data(), payload.size());
  w.commit();
}

CheckpointMeta read_checkpoint_meta(const fs::path& path) {
  return parse(path, read_file(path)).meta;
}

CheckpointMeta read_checkpoint(const fs::path& path, torch::nn::Module& model,
                               torch::optim::Optimizer& optimizer, const GptConfig& expected,
                               const torch::Device& device) {
  const std::string bytes = read_file(path);
  Parsed p = parse(path, bytes);
  if (!(p.meta.model == expected))
    throw DataError(path.string() + ": checkpoint was written for model " +
                    p.meta.model.to_json().dump() + " but the config says " +
                    expected.to_json().dump() + " (use a fresh run dir or the same [model])");
  if (p.meta.manifest_hash != param_manifest(model).hash())
    throw DataError(path.string() + ": checkpoint parameter manifest differs from this model's");
  try {
    torch::serialize::InputArchive archive, model_ar, optim_ar;
    archive.load_from(bytes.data() + p.payload_off, p.payload_len, device);
    archive.read("model", model_ar);
    archive.read("optimizer", optim_ar);
    model.load(model_ar);
    optimizer.load(optim_ar);
    torch::Tensor rng;
    archive.read("rng_cpu", rng);
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng.to(torch::kCPU));
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
