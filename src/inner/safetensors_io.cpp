#include "inner/safetensors_io.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "common/atomic_file.h"
#include "common/error.h"

namespace longhaul::inner {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // safetensors' own cap is 100 MB

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  size_t bytes;
};
constexpr DtypeInfo kDtypes[] = {
    {"F32", torch::kFloat32, 4},   {"F64", torch::kFloat64, 8}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},     {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* find_dtype(torch::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return &d;
  return nullptr;
}
const DtypeInfo* find_dtype(const std::string& s) {
  for (const auto& d : kDtypes)
    if (s == d.name) return &d;
  return nullptr;
}

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

struct Parsed {
  std::vector<Entry> entries;  // sorted by begin
  nlohmann::json metadata = nlohmann::json::object();
  std::string bytes;  // whole file
  uint64_t data_start = 0;
};

Parsed parse(const std::filesystem::path& path) {
  auto fail = [&](const std::string& what) -> DataError {
    return DataError("safetensors file " + path.string() + ": " + what);
  };
  Parsed out;
  out.bytes = read_file(path);
  const uint64_t size = out.bytes.size();
  if (size < 8)
    throw fail(detail::concat("file is ", size, " bytes, shorter than the 8-byte header length"));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | static_cast<unsigned char>(out.bytes[i]);
  if (header_len > kMaxHeaderBytes || header_len > size - 8)
    throw fail(detail::concat("header length ", header_len, " exceeds the file (", size,
                              " bytes) or the cap (", kMaxHeaderBytes, ")"));
  out.data_start = 8 + header_len;
  const uint64_t data_size = size - out.data_start;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(out.bytes.begin() + 8,
                                   out.bytes.begin() + static_cast<long>(out.data_start));
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw fail("header is not a JSON object");
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object");
      out.metadata = v;
      continue;
    }
    auto bad = [&](const std::string& what) { return fail("tensor '" + name + "': " + what); };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets"))
      throw bad("expected an object with dtype, shape and data_offsets");
    Entry e;
    e.name = name;
    if (!v["dtype"].is_string() || !(e.dtype = find_dtype(v["dtype"].get<std::string>())))
      throw bad("unsupported dtype " + v["dtype"].dump());
    if (!v["shape"].is_array()) throw bad("shape is not an array");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned())
        throw bad("shape " + v["shape"].dump() + " has a non-integer or negative dimension");
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > (uint64_t{1} << 48) / dim)
        throw bad("shape " + v["shape"].dump() + " is absurdly large");
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw bad("data_offsets must be [begin, end] non-negative integers, got " + off.dump());
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.begin > e.end || e.end > data_size)
      throw bad(detail::concat("data_offsets [", e.begin, ", ", e.end, "] outside the ", data_size,
                               " data bytes"));
    if (e.end - e.begin != numel * e.dtype->bytes)
      throw bad(detail::concat("data_offsets span ", e.end - e.begin, " bytes, but shape ",
                               v["shape"].dump(), " of ", e.dtype->name, " needs ",
                               numel * e.dtype->bytes));
    out.entries.push_back(std::move(e));
  }
  std::sort(out.entries.begin(), out.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const auto& e : out.entries) {
    if (e.begin != cursor)
      throw fail(detail::concat("tensor '", e.name, "' starts at data byte ", e.begin,
                                ", expected ", cursor, " (tensors overlap or leave a gap)"));
    cursor = e.end;
  }
  if (cursor != data_size)
    throw fail(detail::concat("tensors cover ", cursor, " data bytes but the file holds ",
                              data_size, " (truncated or trailing bytes)"));
  return out;
}

}  // namespace

void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                      const nlohmann::json& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.is_null()) {
    if (!metadata.is_object())
      throw UserError("save_safetensors " + path.string() + ": metadata must be a JSON object");
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata.items())
      meta[k] = v.is_string() ? v.get<std::string>() : v.dump();
    if (!meta.empty()) header["__metadata__"] = meta;
  }
  std::vector<torch::Tensor> host;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__" || !seen.insert(name).second)
      throw UserError("save_safetensors " + path.string() +
                      ": empty, reserved or duplicate tensor name '" + name + "'");
    const DtypeInfo* d = find_dtype(t.scalar_type());
    if (!d)
      throw UserError(detail::concat("save_safetensors ", path.string(), ": tensor '", name,
                                     "' has unsupported dtype ", t.scalar_type()));
    host.push_back(t.detach().to(torch::kCPU).contiguous());
    const uint64_t bytes = static_cast<uint64_t>(host.back().numel()) * d->bytes;
    header[name] = {{"dtype", d->name},
                    {"shape", host.back().sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned
  unsigned char len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<unsigned char>((static_cast<uint64_t>(json.size()) >> (8 * i)) & 0xff);

  AtomicFileWriter w(path);
  w.write(len, 8);
  w.write(json.data(), json.size());
  for (const auto& t : host)
    w.write(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  w.commit();
}

NamedTensors load_safetensors(const std::filesystem::path& path) {
  Parsed p = parse(path);
  NamedTensors out;
  out.reserve(p.entries.size());
  for (const auto& e : p.entries) {
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype->type));
    if (e.end > e.begin)
      std::memcpy(t.data_ptr(), p.bytes.data() + p.data_start + e.begin, e.end - e.begin);
    out.emplace_back(e.name, std::move(t));
  }
  return out;
}

nlohmann::json load_safetensors_metadata(const std::filesystem::path& path) {
  return parse(path).metadata;
}

void export_model(Gpt& model, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw UserError("cannot create export directory " + dir.string() + ": " + ec.message());
  NamedTensors tensors;
  for (const auto& item : model->named_parameters(/*recurse=*/true))
    tensors.emplace_back(item.key(), item.value().detach().to(torch::kCPU, torch::kFloat32));
  tensors.emplace_back("lm_head.weight",
                       model->transformer->wte->weight.detach().to(torch::kCPU, torch::kFloat32));
  save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomic(dir / "model.json", model->config().to_json().dump(2) + "\n");
}

void load_params(torch::nn::Module& m, const NamedTensors& tensors, const std::string& source) {
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : tensors) by_name[name] = &t;
  auto params = m.named_parameters(/*recurse=*/true);
  torch::NoGradGuard no_grad;
  for (auto& item : params) {
    auto it = by_name.find(item.key());
    if (it == by_name.end()) throw DataError(source + ": missing tensor '" + item.key() + "'");
    const torch::Tensor& src = *it->second;
    if (src.sizes() != item.value().sizes())
      throw DataError(detail::concat(source, ": tensor '", item.key(), "' has shape ", src.sizes(),
                                     ", expected ", item.value().sizes()));
    if (!src.is_floating_point())
      throw DataError(detail::concat(source, ": tensor '", item.key(), "' has dtype ",
                                     src.scalar_type(), ", expected a floating type"));
    item.value().copy_(src);
    by_name.erase(it);
  }
  for (const auto& [name, t] : by_name) {
    if (name == "lm_head.weight" && params.contains("transformer.wte.weight")) {
      const auto& wte = params["transformer.wte.weight"];
      if (t->sizes() != wte.sizes() || !torch::equal(t->to(wte.device(), wte.scalar_type()), wte))
        throw DataError(source +
                        ": lm_head.weight differs from transformer.wte.weight (they are tied)");
      continue;
    }
    throw DataError(source + ": unexpected tensor '" + name + "' (not a parameter of this model)");
  }
}

Gpt load_exported_model(const std::filesystem::path& dir) {
  const auto json_path = dir / "model.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(json_path));
  } catch (const nlohmann::json::exception& e) {
    throw DataError(json_path.string() + ": not valid JSON: " + e.what());
  }
  GptConfig cfg;
  try {
    cfg = GptConfig::from_json(j);
  } catch (const ConfigError& e) {
    throw DataError(json_path.string() + ": " + e.what());
  }
  Gpt model(cfg);
  const auto st = dir / "model.safetensors";
  load_params(*model, load_safetensors(st), st.string());
  return model;
}

}  // namespace longhaul::inner
