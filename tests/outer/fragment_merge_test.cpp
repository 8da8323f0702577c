// A site's side of a fragment exchange (outer/fragment_merge.h): the update lands in the
// fragment's slice of θ only, and the merge mixes that slice into the local parameters with α.
#include "outer/fragment_merge.h"

#include <gtest/gtest.h>

#include <numeric>

#include "common/error.h"

namespace longhaul::outer {
namespace {

// Two blocks of two tensors each plus an embedding: P = 2 puts block 0 (and the embedding,
// the lighter fragment's) in fragment 0, block 1 in fragment 1.
transport::Manifest two_block_manifest() {
  transport::Manifest m;
  m.add("transformer.wte.weight", {4, 2});
  m.add("transformer.h.0.attn.weight", {2, 2});
  m.add("transformer.h.0.mlp.weight", {3});
  m.add("transformer.h.1.attn.weight", {2, 2});
  m.add("transformer.h.1.mlp.weight", {3});
  return m;
}

TEST(FragmentMerge, UpdateLandsInItsFragmentOnly) {
  const transport::Manifest m = two_block_manifest();
  const FragmentLayout l = FragmentLayout::strided(m, 2);
  std::vector<float> theta(m.total_elements(), 1.f);
  const std::vector<float> before = theta;
  std::vector<float> u(l.fragment(1).numel);
  std::iota(u.begin(), u.end(), 0.5f);
  add_to_fragment(l, 1, u, theta);
  const std::vector<float> got = l.gather(1, theta);
  for (std::size_t i = 0; i < u.size(); ++i) EXPECT_EQ(got[i], 1.f + u[i]);
  EXPECT_EQ(l.gather(0, theta), l.gather(0, before)) << "fragment 0 must not change";
  EXPECT_THROW(add_to_fragment(l, 1, std::vector<float>(u.size() + 1), theta), InvariantError);
}

TEST(FragmentMerge, AlphaMixesLocalAndGlobalInTheFragmentAndZeroCopiesExactly) {
  const transport::Manifest m = two_block_manifest();
  const FragmentLayout l = FragmentLayout::strided(m, 2);
  const std::size_t n = m.total_elements();
  std::vector<float> global(n), local(n);
  for (std::size_t i = 0; i < n; ++i) {
    global[i] = 0.1f * static_cast<float>(i) - 1.f;
    local[i] = 3.f - 0.37f * static_cast<float>(i);
  }
  const std::vector<float> local0 = local;
  merge_fragment(l, 0, 0.5f, global, local);
  for (const FragmentRange& r : l.fragment(0).ranges)
    for (uint64_t i = r.offset; i < r.offset + r.numel; ++i)
      EXPECT_FLOAT_EQ(local[i], 0.5f * local0[i] + 0.5f * global[i]) << i;
  EXPECT_EQ(l.gather(1, local), l.gather(1, local0)) << "the other fragment keeps its local values";

  std::vector<float> copy = local0;
  merge_fragment(l, 1, 0.f, global, copy);  // blocking exchange: local[1] = θ[1] bitwise
  EXPECT_EQ(l.gather(1, copy), l.gather(1, global));
  EXPECT_EQ(l.gather(0, copy), l.gather(0, local0));

  std::vector<float> mostly_local = local0;
  merge_fragment(l, 1, 0.9f, global, mostly_local);
  const auto g1 = l.gather(1, global), l1 = l.gather(1, local0), m1 = l.gather(1, mostly_local);
  for (std::size_t i = 0; i < m1.size(); ++i) EXPECT_NEAR(m1[i], 0.9f * l1[i] + 0.1f * g1[i], 1e-6f);
  EXPECT_THROW(merge_fragment(l, 1, 1.f, global, copy), InvariantError);  // α = 1 would never sync
}

}  // namespace
}  // namespace longhaul::outer
