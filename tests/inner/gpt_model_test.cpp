// Gpt: config validation, nanoGPT names and shapes, GPT-2 init statistics, tied head,
// causality, dropout, flat parameter vector and hash, device parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/error.h"
#include "tiny_gpt_config.h"
#include "inner/device.h"
#include "inner/flat_params.h"
#include "inner/gpt.h"

using namespace longhaul;
using namespace longhaul::inner;

namespace {

GptConfig tiny() { return longhaul::test::tiny_gpt_config(); }

template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

class GptModel : public ::testing::Test {
 protected:
  void SetUp() override { torch::set_num_threads(1); }
};

}  // namespace

TEST_F(GptModel, ConfigValidationNamesTheField) {
  auto with = [](auto mutate) {
    GptConfig c = tiny();
    mutate(c);
    return error_of([&] { c.validate(); });
  };
  EXPECT_NE(with([](GptConfig& c) {
              c.n_embd = 30;
              c.n_head = 4;
            }).find("n_embd = 30 is not divisible by n_head = 4"),
            std::string::npos);
  EXPECT_NE(with([](GptConfig& c) { c.n_layer = 0; }).find("n_layer = 0"), std::string::npos);
  EXPECT_NE(with([](GptConfig& c) { c.vocab_size = -3; }).find("vocab_size = -3"),
            std::string::npos);
  EXPECT_NE(with([](GptConfig& c) { c.dropout = 1.0; }).find("dropout = 1"), std::string::npos);
  EXPECT_EQ(with([](GptConfig&) {}), "<no exception>");
  EXPECT_THROW(Gpt(GptConfig{.n_embd = 30}), ConfigError);  // n_head 4 does not divide 30
}

TEST_F(GptModel, ConfigJsonRoundTripAndErrors) {
  GptConfig c = tiny();
  c.dropout = 0.25;
  c.bias = false;
  EXPECT_EQ(GptConfig::from_json(c.to_json()), c);
  EXPECT_EQ(GptConfig::from_json(nlohmann::json::object()), GptConfig{});
  EXPECT_NE(error_of([] {
              GptConfig::from_json({{"n_layers", 2}});
            }).find("unknown key 'n_layers'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              GptConfig::from_json({{"n_head", "4"}});
            }).find("n_head = \"4\", expected an integer"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              GptConfig::from_json({{"n_head", 3}});
            }).find("not divisible"),
            std::string::npos);
  EXPECT_THROW(GptConfig::from_json(nlohmann::json::array()), ConfigError);
}

TEST_F(GptModel, ParameterNamesAndShapesAreNanoGpts) {
  Gpt m(tiny());
  std::vector<std::string> expected = {"transformer.wte.weight", "transformer.wpe.weight"};
  for (int i = 0; i < 2; ++i) {
    const std::string b = "transformer.h." + std::to_string(i) + ".";
    for (const char* s :
         {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
          "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight",
          "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"})
      expected.push_back(b + s);
  }
  expected.push_back("transformer.ln_f.weight");
  expected.push_back("transformer.ln_f.bias");
  auto params = m->named_parameters();
  EXPECT_EQ(params.keys(), expected);
  EXPECT_EQ(params["transformer.wte.weight"].sizes(), torch::IntArrayRef({64, 32}));
  EXPECT_EQ(params["transformer.wpe.weight"].sizes(), torch::IntArrayRef({16, 32}));
  EXPECT_EQ(params["transformer.h.1.attn.c_attn.weight"].sizes(), torch::IntArrayRef({96, 32}));
  EXPECT_EQ(params["transformer.h.1.attn.c_attn.bias"].sizes(), torch::IntArrayRef({96}));
  EXPECT_EQ(params["transformer.h.0.mlp.c_fc.weight"].sizes(), torch::IntArrayRef({128, 32}));
  EXPECT_EQ(params["transformer.h.0.mlp.c_proj.weight"].sizes(), torch::IntArrayRef({32, 128}));
  // nanoGPT's count: 12·C² + 13·C per block (with biases), embeddings, final LayerNorm.
  const int64_t C = 32;
  EXPECT_EQ(m->num_parameters(), 64 * C + 16 * C + 2 * (12 * C * C + 13 * C) + 2 * C);

  GptConfig nb = tiny();
  nb.bias = false;
  Gpt no_bias(nb);
  for (const auto& item : no_bias->named_parameters())
    EXPECT_EQ(item.key().find("bias"), std::string::npos) << item.key();
}

TEST_F(GptModel, ForwardShapesAndInitialLoss) {
  torch::manual_seed(0);
  Gpt m(tiny());
  auto idx = torch::randint(0, 64, {3, 10}, torch::kLong);
  auto logits = m->forward(idx);
  EXPECT_EQ(logits.sizes(), torch::IntArrayRef({3, 10, 64}));
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
  auto loss = m->loss(idx, torch::randint(0, 64, {3, 10}, torch::kLong));
  EXPECT_EQ(loss.dim(), 0);
  // Small init => near-uniform predictions: loss ~ ln(vocab).
  EXPECT_NEAR(loss.item<double>(), std::log(64.0), 0.05);
  EXPECT_THROW(m->forward(torch::zeros({1, 17}, torch::kLong)), InvariantError);  // > block_size
  EXPECT_THROW(m->forward(torch::zeros({17}, torch::kLong)), InvariantError);     // not [B, T]
}

// The evaluator's loss, logits a few positions at a time: the same mean as loss() (to fp32
// rounding), ignored targets included.
TEST_F(GptModel, ChunkedLossSumIsTheMeanLossTimesTheTokens) {
  torch::manual_seed(1);
  Gpt m(tiny());
  torch::NoGradGuard ng;
  auto idx = torch::randint(0, 64, {3, 16}, torch::kLong);
  auto y = torch::randint(0, 64, {3, 16}, torch::kLong);
  y.index_put_({1, 5}, -1);
  const double mean = m->loss(idx, y).item<double>();
  for (int64_t positions : {1, 5, 16, 100}) {
    const auto [sum, count] = m->loss_sum_chunked(idx, y, positions);
    EXPECT_EQ(count, 47) << positions;
    EXPECT_NEAR(sum / count, mean, 1e-6 * mean) << positions;
  }
  EXPECT_THROW(m->loss_sum_chunked(idx, y, 0), InvariantError);
}

TEST_F(GptModel, InitStatisticsFollowGpt2) {
  torch::manual_seed(1);
  GptConfig c;  // defaults: 4 layers, C = 128
  Gpt m(c);
  const double proj_std = 0.02 / std::sqrt(2.0 * 4);
  for (const auto& item : m->named_parameters()) {
    const auto& name = item.key();
    const auto& p = item.value();
    if (name.find(".ln_") != std::string::npos) {
      const bool w = name.ends_with(".weight");
      EXPECT_TRUE(torch::equal(p, w ? torch::ones_like(p) : torch::zeros_like(p))) << name;
    } else if (name.ends_with(".bias")) {
      EXPECT_EQ(p.abs().max().item<float>(), 0.0f) << name;
    } else {
      const double want = name.ends_with("c_proj.weight") ? proj_std : 0.02;
      EXPECT_NEAR(p.std().item<double>(), want, 0.05 * want) << name;
      EXPECT_NEAR(p.mean().item<double>(), 0.0, 0.05 * want) << name;
    }
  }
}

TEST_F(GptModel, LmHeadIsTiedToTokenEmbedding) {
  torch::manual_seed(2);
  Gpt m(tiny());
  auto idx = torch::randint(0, 64, {2, 8}, torch::kLong);
  auto targets = torch::randint(0, 64, {2, 8}, torch::kLong);
  // Gradient flows into wte from both the embedding lookup and the head: rows of tokens that
  // never occur in idx still get a gradient (only through the head).
  m->loss(idx, targets).backward();
  auto g = m->transformer->wte->weight.grad();
  auto present = torch::zeros({64}, torch::kBool).index_put_({idx.flatten()}, torch::tensor(true));
  auto absent_rows = g.index({present.logical_not()});
  ASSERT_GT(absent_rows.size(0), 0);
  EXPECT_GT(absent_rows.abs().sum().item<double>(), 0.0);
  // With wte zeroed every logit is exactly 0.
  torch::NoGradGuard ng;
  m->transformer->wte->weight.zero_();
  EXPECT_EQ(m->forward(idx).abs().max().item<float>(), 0.0f);
}

TEST_F(GptModel, AttentionIsCausal) {
  torch::manual_seed(3);
  Gpt m(tiny());
  auto a = torch::randint(0, 64, {1, 12}, torch::kLong);
  auto b = a.clone();
  b.index_put_({0, 7}, (a.index({0, 7}) + 1) % 64);
  auto la = m->forward(a), lb = m->forward(b);
  using torch::indexing::Slice;
  EXPECT_TRUE(torch::equal(la.index({Slice(), Slice(0, 7)}), lb.index({Slice(), Slice(0, 7)})));
  for (int t = 7; t < 12; ++t)
    EXPECT_GT((la.index({0, t}) - lb.index({0, t})).abs().max().item<float>(), 1e-6f)
        << "position " << t;
}

TEST_F(GptModel, DropoutOnlyInTrainingMode) {
  GptConfig c = tiny();
  c.dropout = 0.3;
  torch::manual_seed(4);
  Gpt m(c);
  auto idx = torch::randint(0, 64, {2, 8}, torch::kLong);
  m->train();
  EXPECT_FALSE(torch::equal(m->forward(idx), m->forward(idx)));
  m->eval();
  EXPECT_TRUE(torch::equal(m->forward(idx), m->forward(idx)));
}

TEST_F(GptModel, FlatParamsFollowManifestAndRoundTrip) {
  torch::manual_seed(5);
  Gpt m(tiny());
  const auto manifest = param_manifest(*m);
  const auto params = m->named_parameters();
  ASSERT_EQ(manifest.entries().size(), params.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& e = manifest.entries()[i];
    EXPECT_EQ(e.name, params[i].key());
    EXPECT_EQ(e.shape, params[i].value().sizes().vec());
    EXPECT_EQ(e.offset, offset);
    offset += e.numel();
  }
  EXPECT_EQ(manifest.total_elements(), static_cast<uint64_t>(m->num_parameters()));

  std::vector<float> flat = params_to_flat(*m);
  ASSERT_EQ(flat.size(), offset);
  // Element k of tensor i sits at offset_i + k (row-major).
  const auto& c_fc = manifest.entries()[10];
  ASSERT_EQ(c_fc.name, "transformer.h.0.mlp.c_fc.weight");
  EXPECT_EQ(flat[c_fc.offset + 5 * 32 + 7], params[10].value().index({5, 7}).item<float>());

  const uint64_t h0 = params_hash(*m);
  EXPECT_EQ(flat_hash(flat), h0);
  {
    torch::NoGradGuard ng;
    for (auto& p : m->parameters()) p.normal_();
  }
  EXPECT_NE(params_hash(*m), h0);
  flat_to_params(*m, flat);
  EXPECT_EQ(params_hash(*m), h0);
  for (auto& p : m->parameters()) {
    EXPECT_TRUE(p.requires_grad());
    EXPECT_FALSE(p.grad_fn());  // copy was not recorded by autograd
  }

  // One ulp anywhere changes the hash.
  flat[offset - 1] = std::nextafter(flat[offset - 1], 1e9f);
  EXPECT_NE(flat_hash(flat), h0);
  flat_to_params(*m, flat);
  EXPECT_EQ(params_hash(*m), flat_hash(flat));

  // Same seed, same init, same hash; wrong sizes are invariant errors.
  torch::manual_seed(5);
  Gpt again(tiny());
  EXPECT_EQ(params_hash(*again), h0);
  std::vector<float> short_vec(offset - 1);
  EXPECT_THROW(flat_to_params(*m, short_vec), InvariantError);
  std::vector<float> long_vec(offset + 1);
  EXPECT_THROW(params_to_flat(*m, long_vec), InvariantError);
}

TEST_F(GptModel, DeviceParsing) {
  EXPECT_EQ(parse_device("cpu"), torch::Device(torch::kCPU));
  for (const char* bad : {"", "gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda:0x", "cuda 0"})
    EXPECT_NE(error_of([&] { parse_device(bad); }).find("expected \"cpu\", \"cuda\" or \"cuda:N\""),
              std::string::npos)
        << bad;
  if (!cuda_available()) {
    EXPECT_NE(error_of([] { parse_device("cuda"); }).find("CUDA is not available"),
              std::string::npos);
    EXPECT_THROW(parse_device("cuda:1"), UserError);
  } else {
    EXPECT_EQ(parse_device("cuda"), torch::Device(torch::kCUDA, 0));
    EXPECT_NE(error_of([] { parse_device("cuda:99"); }).find("CUDA device(s) visible"),
              std::string::npos);
  }
  AutocastGuard cpu_guard(torch::Device(torch::kCPU), true);
  EXPECT_FALSE(cpu_guard.active());
}

TEST_F(GptModel, CudaForwardMatchesCpuAndAutocastsToBf16) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(6);
  Gpt m(tiny());
  auto idx = torch::randint(0, 64, {2, 16}, torch::kLong);
  auto cpu_logits = m->forward(idx);
  m->to(torch::kCUDA);
  auto cuda_idx = idx.to(torch::kCUDA);
  auto cuda_logits = m->forward(cuda_idx).cpu();
  EXPECT_LT((cuda_logits - cpu_logits).abs().max().item<float>(), 1e-4f);
  {
    AutocastGuard guard(torch::Device(torch::kCUDA), true);
    ASSERT_TRUE(guard.active());
    auto bf = m->forward(cuda_idx);
    EXPECT_EQ(bf.scalar_type(), torch::kBFloat16);
    EXPECT_LT((bf.cpu().to(torch::kFloat32) - cpu_logits).abs().max().item<float>(), 0.05f);
    auto loss = m->loss(cuda_idx, cuda_idx);
    loss.backward();
    EXPECT_EQ(m->transformer->wte->weight.grad().scalar_type(), torch::kFloat32);
  }
  EXPECT_EQ(m->forward(cuda_idx).scalar_type(), torch::kFloat32);  // guard restored fp32
  std::vector<float> flat = params_to_flat(*m);                    // device -> host
  m->to(torch::kCPU);
  EXPECT_EQ(flat_hash(flat), params_hash(*m));
}
