// safetensors I/O: round trip of every supported dtype, validation of corrupt files, the
// nanoGPT export (model.safetensors + model.json) and loading it back.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/atomic_file.h"
#include "common/error.h"
#include "tiny_gpt_config.h"
#include "inner/flat_params.h"
#include "inner/safetensors_io.h"

using namespace longhaul;
using namespace longhaul::inner;
namespace fs = std::filesystem;

namespace {

class GptIo : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::set_num_threads(1);
    dir_ = fs::temp_directory_path() /
           ("longhaul_gpt_io_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A file made of a given header JSON text and `data_bytes` zero bytes of data.
  fs::path raw_file(const std::string& name, const std::string& header, size_t data_bytes,
                    uint64_t len_override = 0) {
    std::string bytes(8, '\0');
    const uint64_t len = len_override ? len_override : header.size();
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
    bytes += header;
    bytes.append(data_bytes, '\0');
    write_file_atomic(dir_ / name, bytes);
    return dir_ / name;
  }

  std::string load_error(const fs::path& p) {
    try {
      load_safetensors(p);
    } catch (const DataError& e) {
      return e.what();
    }
    return "<no DataError>";
  }

  fs::path dir_;
};

GptConfig tiny() { return longhaul::test::tiny_gpt_config(); }

}  // namespace

TEST_F(GptIo, RoundTripEveryDtypeInOrder) {
  torch::manual_seed(0);
  NamedTensors in = {
      {"z.f32", torch::randn({3, 4})},
      {"a.bf16", torch::randn({5}).to(torch::kBFloat16)},
      {"m.f16", torch::randn({2, 2}).to(torch::kFloat16)},
      {"f64", torch::randn({2}, torch::kFloat64)},
      {"i64", torch::arange(-3, 4, torch::kLong)},
      {"i32", torch::tensor({7, -8}, torch::kInt)},
      {"u8", torch::tensor({0, 255}, torch::kByte)},
      {"flag", torch::tensor({true, false, true})},
      {"scalar", torch::tensor(2.5f)},
      {"empty", torch::zeros({0, 3})},
      {"strided", torch::randn({4, 6}).t()},  // non-contiguous input
  };
  const auto path = dir_ / "t.safetensors";
  save_safetensors(path, in, {{"step", 12}, {"format", "pt"}});
  auto out = load_safetensors(path);
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].first, in[i].first);
    EXPECT_EQ(out[i].second.scalar_type(), in[i].second.scalar_type()) << in[i].first;
    EXPECT_TRUE(torch::equal(out[i].second, in[i].second)) << in[i].first;
  }
  auto meta = load_safetensors_metadata(path);
  EXPECT_EQ(meta["step"], "12");
  EXPECT_EQ(meta["format"], "pt");
  // Data starts 8-byte aligned (safetensors recommends it).
  auto bytes = read_file(path);
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(len % 8, 0u);
}

TEST_F(GptIo, SaveRejectsBadNamesAndDtypes) {
  const auto p = dir_ / "bad.safetensors";
  EXPECT_THROW(save_safetensors(p, {{"a", torch::zeros({1})}, {"a", torch::zeros({1})}}),
               UserError);
  EXPECT_THROW(save_safetensors(p, {{"", torch::zeros({1})}}), UserError);
  EXPECT_THROW(save_safetensors(p, {{"c", torch::zeros({1}, torch::kComplexFloat)}}), UserError);
  EXPECT_FALSE(fs::exists(p));  // nothing half-written
  write_file_atomic(dir_ / "file", std::string("x"));
  EXPECT_THROW(
      save_safetensors(dir_ / "file" / "under_a_file.safetensors", {{"a", torch::zeros({1})}}),
      std::exception);
}

TEST_F(GptIo, CorruptFilesGiveDataErrorsNamingFileAndTensor) {
  const std::string good = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  ASSERT_EQ(load_error(raw_file("good", good, 24)), "<no DataError>");

  auto expect = [&](const fs::path& p, const std::string& fragment) {
    const std::string msg = load_error(p);
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << "want '" << fragment << "' in: " << msg;
  };
  write_file_atomic(dir_ / "tiny", std::string("abc"));
  expect(dir_ / "tiny", "shorter than the 8-byte header length");
  expect(raw_file("huge_len", good, 24, 1ull << 40), "header length");
  expect(raw_file("not_json", "{\"w\": [", 0), "not valid JSON");
  expect(raw_file("not_object", "[1,2]", 0), "not a JSON object");
  expect(raw_file("truncated", good, 23),
         "tensor 'w': data_offsets [0, 24] outside the 23 data bytes");
  expect(raw_file("trailing", good, 25), "truncated or trailing bytes");
  expect(raw_file("dtype", R"({"w":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", 2),
         "tensor 'w': unsupported dtype");
  expect(raw_file("shape", R"({"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}})", 8),
         "tensor 'w': shape");
  expect(raw_file("size", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
         "tensor 'w': data_offsets span 8 bytes");
  expect(
      raw_file(
          "overlap",
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          12),
      "tensor 'b' starts at data byte 4, expected 8");
  expect(raw_file("fields", R"({"w":{"dtype":"F32","shape":[2]}})", 8),
         "tensor 'w': expected an object");
  expect(raw_file("meta", R"({"__metadata__":[1]})", 0), "__metadata__ is not an object");
  EXPECT_THROW(load_safetensors(dir_ / "missing.safetensors"), UserError);
}

TEST_F(GptIo, ExportHasNanoGptStateDictAndLoadsBack) {
  torch::manual_seed(1);
  Gpt m(tiny());
  {
    torch::NoGradGuard ng;
    for (auto& p : m->parameters())
      p.add_(torch::randn_like(p) * 0.01);  // non-trivial LN/bias values
  }
  export_model(m, dir_ / "export");
  ASSERT_TRUE(fs::exists(dir_ / "export" / "model.safetensors"));
  auto tensors = load_safetensors(dir_ / "export" / "model.safetensors");
  const auto manifest = param_manifest(*m);
  ASSERT_EQ(tensors.size(), manifest.entries().size() + 1);
  for (size_t i = 0; i < manifest.entries().size(); ++i)
    EXPECT_EQ(tensors[i].first, manifest.entries()[i].name);
  EXPECT_EQ(tensors.back().first, "lm_head.weight");
  EXPECT_TRUE(torch::equal(tensors.back().second, m->transformer->wte->weight));
  for (const auto& [name, t] : tensors) EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name;
  EXPECT_EQ(GptConfig::from_json(nlohmann::json::parse(read_file(dir_ / "export" / "model.json"))),
            tiny());

  Gpt back = load_exported_model(dir_ / "export");
  EXPECT_EQ(back->config(), tiny());
  EXPECT_EQ(params_hash(*back), params_hash(*m));
}

TEST_F(GptIo, LoadParamsRejectsMismatches) {
  torch::manual_seed(2);
  Gpt m(tiny());
  export_model(m, dir_ / "e");
  const auto good = load_safetensors(dir_ / "e" / "model.safetensors");
  auto msg = [&](NamedTensors t) {
    try {
      load_params(*m, t, "ckpt.safetensors");
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("<no DataError>");
  };
  EXPECT_EQ(msg(good), "<no DataError>");
  auto missing = good;
  missing.erase(missing.begin() + 3);
  EXPECT_NE(msg(missing).find("ckpt.safetensors: missing tensor 'transformer.h.0.ln_1.bias'"),
            std::string::npos);
  auto shape = good;
  shape[0].second = torch::zeros({64, 31});
  EXPECT_NE(msg(shape).find("'transformer.wte.weight' has shape [64, 31], expected [64, 32]"),
            std::string::npos);
  auto extra = good;
  extra.emplace_back("transformer.h.9.attn.bias", torch::zeros({1}));
  EXPECT_NE(msg(extra).find("unexpected tensor 'transformer.h.9.attn.bias'"), std::string::npos);
  auto untied = good;
  untied.back().second = untied.back().second + 1;
  EXPECT_NE(msg(untied).find("lm_head.weight differs"), std::string::npos);

  GptConfig other = tiny();
  other.n_embd = 64;
  Gpt wider(other);
  EXPECT_THROW(load_params(*wider, good, "x"), DataError);
}
