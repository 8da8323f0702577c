// The fragment layout (outer/fragment_layout.h): strided over blocks, every tensor in exactly one
// fragment, non-block tensors balanced by size, gather/scatter inverse, a stable hash.
#include "outer/fragment_layout.h"

#include <gtest/gtest.h>

#include <numeric>
#include <set>

#include "common/error.h"
#include "inner/flat_params.h"
#include "inner/gpt.h"
#include "inner/tiny_gpt_config.h"

namespace longhaul::outer {
namespace {

// nanoGPT's named_parameters() for n_layer blocks of width C (inner/gpt.h), built by hand.
transport::Manifest gpt_manifest(int n_layer, int64_t C = 8, int64_t vocab = 64,
                                 int64_t block = 16) {
  transport::Manifest m;
  m.add("transformer.wte.weight", {vocab, C});
  m.add("transformer.wpe.weight", {block, C});
  for (int i = 0; i < n_layer; ++i) {
    const std::string h = "transformer.h." + std::to_string(i) + ".";
    m.add(h + "ln_1.weight", {C});
    m.add(h + "ln_1.bias", {C});
    m.add(h + "attn.c_attn.weight", {3 * C, C});
    m.add(h + "attn.c_attn.bias", {3 * C});
    m.add(h + "attn.c_proj.weight", {C, C});
    m.add(h + "attn.c_proj.bias", {C});
    m.add(h + "ln_2.weight", {C});
    m.add(h + "ln_2.bias", {C});
    m.add(h + "mlp.c_fc.weight", {4 * C, C});
    m.add(h + "mlp.c_fc.bias", {4 * C});
    m.add(h + "mlp.c_proj.weight", {C, 4 * C});
    m.add(h + "mlp.c_proj.bias", {C});
  }
  m.add("transformer.ln_f.weight", {C});
  m.add("transformer.ln_f.bias", {C});
  return m;
}

std::size_t index_of(const transport::Manifest& m, const std::string& name) {
  for (std::size_t i = 0; i < m.entries().size(); ++i)
    if (m.entries()[i].name == name) return i;
  ADD_FAILURE() << "no tensor " << name;
  return 0;
}

// Every element of [0, total) is covered by exactly one range of exactly one fragment, and each
// manifest entry is listed by exactly the fragment that covers it.
void expect_partition(const transport::Manifest& m, const FragmentLayout& l) {
  std::vector<int> owner(m.total_elements(), -1);
  for (int p = 0; p < l.size(); ++p) {
    uint64_t sum = 0;
    uint64_t prev_end = 0;
    bool first = true;
    for (const FragmentRange& r : l.fragment(p).ranges) {
      EXPECT_GT(r.numel, 0u);
      if (!first) {
        EXPECT_GT(r.offset, prev_end) << "ranges ascending and not adjacent (merged)";
      }
      first = false;
      prev_end = r.offset + r.numel;
      ASSERT_LE(prev_end, m.total_elements());
      for (uint64_t e = r.offset; e < r.offset + r.numel; ++e) {
        EXPECT_EQ(owner[e], -1) << "element " << e << " in two fragments";
        owner[e] = p;
      }
      sum += r.numel;
    }
    EXPECT_EQ(sum, l.fragment(p).numel);
  }
  for (uint64_t e = 0; e < owner.size(); ++e)
    ASSERT_NE(owner[e], -1) << "element " << e << " in no fragment";
  std::set<std::size_t> listed;
  for (int p = 0; p < l.size(); ++p)
    for (std::size_t i : l.fragment(p).tensors) {
      EXPECT_TRUE(listed.insert(i).second) << "tensor " << i << " listed twice";
      EXPECT_EQ(l.fragment_of_tensor(i), p);
      const auto& t = m.entries()[i];
      if (t.numel() > 0) {
        EXPECT_EQ(owner[t.offset], p) << t.name;
      }
    }
  EXPECT_EQ(listed.size(), m.entries().size());
}

// A fragment's own manifest lists its tensors in gather order from offset 0, so a codec payload
// of gather(p) is bound to fragment p by its hash; P = 1 gives the whole manifest back.
TEST(FragmentLayout, FragmentManifestsDescribeTheGatheredSlices) {
  const transport::Manifest m = gpt_manifest(6);
  const FragmentLayout one = FragmentLayout::strided(m, 1);
  EXPECT_EQ(one.manifest(0).hash(), m.hash());
  const FragmentLayout l = FragmentLayout::strided(m, 3);
  std::vector<float> flat(m.total_elements());
  std::iota(flat.begin(), flat.end(), 0.f);
  std::set<uint64_t> hashes;
  for (int p = 0; p < 3; ++p) {
    const transport::Manifest& fm = l.manifest(p);
    hashes.insert(fm.hash());
    ASSERT_EQ(fm.total_elements(), l.fragment(p).numel);
    ASSERT_EQ(fm.entries().size(), l.fragment(p).tensors.size());
    const std::vector<float> slice = l.gather(p, flat);
    for (std::size_t k = 0; k < fm.entries().size(); ++k) {
      const auto& mine = fm.entries()[k];
      const auto& orig = m.entries()[l.fragment(p).tensors[k]];
      EXPECT_EQ(mine.name, orig.name);
      EXPECT_EQ(mine.shape, orig.shape);
      // Its first element in the slice is the tensor's first element in θ.
      if (orig.numel() > 0) {
        EXPECT_EQ(slice[mine.offset], flat[orig.offset]) << mine.name;
      }
    }
  }
  EXPECT_EQ(hashes.size(), 3u) << "fragments' payloads must not be interchangeable";
  EXPECT_THROW(l.manifest(3), InvariantError);
}

TEST(FragmentLayout, EveryParameterInExactlyOneFragment) {
  for (int layers : {1, 2, 3, 4, 7, 12}) {
    const auto m = gpt_manifest(layers);
    for (int P = 1; P <= layers; ++P) {
      SCOPED_TRACE("n_layer " + std::to_string(layers) + ", P " + std::to_string(P));
      const auto l = FragmentLayout::strided(m, P);
      ASSERT_EQ(l.size(), P);
      EXPECT_EQ(l.total_elements(), m.total_elements());
      expect_partition(m, l);
    }
  }
}

TEST(FragmentLayout, BlocksAreStrided) {
  const auto m = gpt_manifest(7);
  const auto l = FragmentLayout::strided(m, 3);
  for (std::size_t i = 0; i < m.entries().size(); ++i) {
    const int64_t b = transformer_block_index(m.entries()[i].name);
    if (b >= 0) {
      EXPECT_EQ(l.fragment_of_tensor(i), b % 3) << m.entries()[i].name;
    }
  }
  // A whole block is contiguous in the manifest: fragment 0 (blocks 0, 3, 6) has exactly those
  // three block ranges plus its share of the non-block tensors.
  std::set<int64_t> blocks0;
  for (std::size_t i : l.fragment(0).tensors) {
    const int64_t b = transformer_block_index(m.entries()[i].name);
    if (b >= 0) blocks0.insert(b);
  }
  EXPECT_EQ(blocks0, (std::set<int64_t>{0, 3, 6}));
}

TEST(FragmentLayout, NonBlockTensorsGoLargestFirstToTheLightestFragment) {
  // C = 8: a block has 12·64 + 13·8 = 872 elements; wte 64·8 = 512, wpe 16·8 = 128, ln_f 8 + 8.
  const auto m = gpt_manifest(4);
  const auto l = FragmentLayout::strided(m, 4);  // one block each: all equal, ties to lowest index
  EXPECT_EQ(l.fragment_of_tensor(index_of(m, "transformer.wte.weight")), 0);
  EXPECT_EQ(l.fragment_of_tensor(index_of(m, "transformer.wpe.weight")), 1);
  EXPECT_EQ(l.fragment_of_tensor(index_of(m, "transformer.ln_f.weight")), 2);
  EXPECT_EQ(l.fragment_of_tensor(index_of(m, "transformer.ln_f.bias")), 3);
  // 3 blocks over 2 fragments: fragment 0 holds blocks 0 and 2 (1744), fragment 1 block 1 (872),
  // so every non-block tensor lands on fragment 1, which stays the lighter one throughout.
  const auto m3 = gpt_manifest(3);
  const auto l3 = FragmentLayout::strided(m3, 2);
  EXPECT_EQ(l3.fragment_of_tensor(index_of(m3, "transformer.wte.weight")), 1);
  EXPECT_EQ(l3.fragment_of_tensor(index_of(m3, "transformer.wpe.weight")), 1);  // 1384 + 128 = 1512
  EXPECT_EQ(l3.fragment_of_tensor(index_of(m3, "transformer.ln_f.weight")), 1);  // 1520 < 1744
  EXPECT_EQ(l3.fragment_of_tensor(index_of(m3, "transformer.ln_f.bias")), 1);    // 1528 < 1744
  EXPECT_EQ(l3.fragment(0).numel, 2u * 872u);
  EXPECT_EQ(l3.fragment(1).numel, 872u + 512u + 128u + 16u);
}

TEST(FragmentLayout, OneFragmentIsTheWholeVector) {
  const auto m = gpt_manifest(3);
  const auto l = FragmentLayout::strided(m, 1);
  ASSERT_EQ(l.fragment(0).ranges.size(), 1u);
  EXPECT_EQ(l.fragment(0).ranges[0], (FragmentRange{0, m.total_elements()}));
  EXPECT_EQ(l.fragment(0).numel, m.total_elements());
  EXPECT_EQ(l.fragment(0).tensors.size(), m.entries().size());
  // Also without any transformer block (P = 1 needs none).
  transport::Manifest plain;
  plain.add("w", {3, 4});
  plain.add("b", {4});
  const auto lp = FragmentLayout::strided(plain, 1);
  ASSERT_EQ(lp.fragment(0).ranges.size(), 1u);
  EXPECT_EQ(lp.fragment(0).ranges[0], (FragmentRange{0, 16}));
}

TEST(FragmentLayout, GatherScatterRoundTrip) {
  const auto m = gpt_manifest(5);
  const auto l = FragmentLayout::strided(m, 3);
  std::vector<float> flat(m.total_elements());
  std::iota(flat.begin(), flat.end(), 0.0f);
  std::vector<float> rebuilt(flat.size(), -1.0f);
  for (int p = 0; p < l.size(); ++p) {
    const auto slice = l.gather(p, flat);
    ASSERT_EQ(slice.size(), l.fragment(p).numel);
    // The slice is the fragment's ranges in order.
    std::size_t at = 0;
    for (const auto& r : l.fragment(p).ranges)
      for (uint64_t e = 0; e < r.numel; ++e) ASSERT_EQ(slice[at++], flat[r.offset + e]);
    l.scatter(p, slice, rebuilt);
  }
  EXPECT_EQ(rebuilt, flat);
  // Scatter writes only its own fragment.
  std::vector<float> target(flat.size(), 0.0f);
  std::vector<float> ones(l.fragment(1).numel, 1.0f);
  l.scatter(1, ones, target);
  for (std::size_t i = 0; i < m.entries().size(); ++i) {
    const auto& t = m.entries()[i];
    const float want = l.fragment_of_tensor(i) == 1 ? 1.0f : 0.0f;
    for (uint64_t e = 0; e < t.numel(); ++e) ASSERT_EQ(target[t.offset + e], want) << t.name;
  }
  // Wrong sizes are a broken contract.
  std::vector<float> short_slice(l.fragment(0).numel - 1);
  EXPECT_THROW(l.gather(0, flat, short_slice), InvariantError);
  EXPECT_THROW(l.scatter(0, short_slice, rebuilt), InvariantError);
  std::vector<float> short_flat(flat.size() - 1);
  EXPECT_THROW(l.gather(0, short_flat), InvariantError);
  EXPECT_THROW(l.fragment(3), InvariantError);
}

TEST(FragmentLayout, HashIsStableAndDiffersAcrossFragmentsAndManifests) {
  const auto m4 = gpt_manifest(4);
  EXPECT_EQ(FragmentLayout::strided(m4, 2).hash(),
            FragmentLayout::strided(gpt_manifest(4), 2).hash());
  std::set<uint64_t> seen;
  for (int P = 1; P <= 4; ++P)
    EXPECT_TRUE(seen.insert(FragmentLayout::strided(m4, P).hash()).second) << P;
  EXPECT_TRUE(seen.insert(FragmentLayout::strided(gpt_manifest(5), 2).hash()).second);
  EXPECT_TRUE(seen.insert(FragmentLayout::strided(gpt_manifest(4, 16), 2).hash()).second);
  // Pinned: the join check compares this value across processes, builds and releases; changing
  // the layout rule or the hash must be deliberate (and bump the "strided-v1" tag).
  const uint64_t pinned = FragmentLayout::strided(gpt_manifest(2), 2).hash();
  EXPECT_EQ(pinned, 0xd24af65fecdb4e35ULL) << std::hex << "0x" << pinned;
}

TEST(FragmentLayout, BadFragmentCountsAreUserErrors) {
  const auto m = gpt_manifest(3);
  EXPECT_THROW(FragmentLayout::strided(m, 0), UserError);
  EXPECT_THROW(FragmentLayout::strided(m, -1), UserError);
  try {
    FragmentLayout::strided(m, 4);
    FAIL() << "4 fragments over 3 blocks";
  } catch (const UserError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("sync.fragments = 4"), std::string::npos) << what;
    EXPECT_NE(what.find("3 transformer block"), std::string::npos) << what;
    EXPECT_NE(what.find("model.n_layer"), std::string::npos) << what;
  }
  transport::Manifest plain;
  plain.add("w", {4});
  EXPECT_THROW(FragmentLayout::strided(plain, 2), UserError);
  transport::Manifest gap;  // blocks 0 and 2, no 1
  gap.add("transformer.h.0.w", {4});
  gap.add("transformer.h.2.w", {4});
  gap.add("transformer.h.3.w", {4});
  EXPECT_THROW(FragmentLayout::strided(gap, 2), UserError);
}

TEST(FragmentLayout, BlockIndexParsing) {
  EXPECT_EQ(transformer_block_index("transformer.h.0.ln_1.weight"), 0);
  EXPECT_EQ(transformer_block_index("transformer.h.11.mlp.c_fc.bias"), 11);
  EXPECT_EQ(transformer_block_index("transformer.wte.weight"), -1);
  EXPECT_EQ(transformer_block_index("transformer.ln_f.weight"), -1);
  EXPECT_EQ(transformer_block_index("lm_head.weight"), -1);
  EXPECT_EQ(transformer_block_index("transformer.h.x.w"), -1);
  EXPECT_EQ(transformer_block_index("transformer.h.3"), -1);
  EXPECT_EQ(transformer_block_index("transformer.h.3."), -1);
  EXPECT_EQ(transformer_block_index("transformer.h.12345678901.w"), -1);
}

// The real model's manifest (inner::param_manifest of a Gpt) splits the same way.
TEST(FragmentLayout, RealModelManifest) {
  auto cfg = test::tiny_gpt_config();
  cfg.n_layer = 4;
  torch::manual_seed(0);
  inner::Gpt model(cfg);
  const auto m = inner::param_manifest(*model);
  EXPECT_EQ(m.hash(), gpt_manifest(4, cfg.n_embd, cfg.vocab_size, cfg.block_size).hash())
      << "the hand-built manifest above no longer mirrors inner/gpt.h";
  const auto l = FragmentLayout::strided(m, 2);
  expect_partition(m, l);
  const auto flat = inner::params_to_flat(*model);
  std::vector<float> rebuilt(flat.size());
  for (int p = 0; p < 2; ++p) l.scatter(p, l.gather(p, flat), rebuilt);
  EXPECT_EQ(rebuilt, flat);
  EXPECT_THROW(FragmentLayout::strided(m, 5), UserError);
}

}  // namespace
}  // namespace longhaul::outer
