// Streaming DiLoCo's fragments (issue #11): the flat parameter vector (transport/manifest.h)
// split into P disjoint fragments along whole tensors, each synchronized on its own schedule
// (fragment_schedule.h). Derived from the manifest alone, so the coordinator and every site
// compute the same layout; hash() goes into the join check next to the manifest hash.
//
// The default layout, strided(): transformer blocks are dealt round-robin, fragment p holding
// blocks p, p+P, p+2P, ... (Streaming DiLoCo, arXiv 2501.18512, found strided fragments better
// than contiguous groups of blocks). A block is every tensor named "transformer.h.<i>.<rest>".
// Every other tensor (transformer.wte.weight, transformer.wpe.weight, transformer.ln_f.*,
// lm_head.weight if a manifest has one) is assigned after the blocks, largest first (ties: manifest
// order), each to the fragment with the fewest elements so far (ties: lowest index).
// Why by size: a fragment's exchange is what crosses the WAN at one time, so the largest fragment
// sets the peak bytes in flight; pinning the embeddings to fragment 0 would stack wte (vocab x C,
// often the largest tensor) on top of a full share of blocks there. Whole tensors are never split,
// so a tensor larger than a fragment's share of blocks (GPT-2's wte) still dominates its fragment.
//
// Units: offsets and counts are in elements (fp32) of the flat vector, never bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "transport/manifest.h"

namespace longhaul::outer {

// [offset, offset + numel) in elements of the flat vector.
struct FragmentRange {
  uint64_t offset = 0;
  uint64_t numel = 0;
  bool operator==(const FragmentRange&) const = default;
};

struct Fragment {
  // Ascending, disjoint, non-adjacent (neighbouring tensors of one fragment are merged into one
  // range), so a fragment of P = 1 is the single range [0, total_elements).
  std::vector<FragmentRange> ranges;
  std::vector<std::size_t> tensors;  // manifest entry indices, ascending
  uint64_t numel = 0;                // sum of the ranges' numel: the fragment's slice length
};

class FragmentLayout {
 public:
  // The strided layout above. Throws UserError unless 1 <= fragments and, when fragments > 1,
  // fragments <= the number of transformer blocks (the message names sync.fragments and
  // model.n_layer). Block indices must run 0..n-1 without gaps (UserError otherwise).
  static FragmentLayout strided(const transport::Manifest& manifest, int fragments);

  int size() const { return static_cast<int>(fragments_.size()); }  // P
  const Fragment& fragment(int p) const;  // InvariantError unless 0 <= p < P
  const std::vector<Fragment>& fragments() const { return fragments_; }
  // Fragment p's slice as a flat vector of its own: its tensors (names, shapes) in manifest
  // order at offsets from 0 — exactly gather(p)'s order. The codec encodes a fragment's
  // pseudo-gradient and update against it (its hash() binds a payload to that fragment); for
  // P = 1 it equals the whole manifest.
  const transport::Manifest& manifest(int p) const;
  uint64_t total_elements() const { return total_; }
  // The fragment holding manifest entry i (every entry is in exactly one).
  int fragment_of_tensor(std::size_t i) const;

  // xxh64 over a version tag, P, total_elements and every fragment's ranges (little-endian u64s):
  // stable across processes and platforms. Equal hashes mean equal ranges; the manifest's own
  // names and shapes are checked by Manifest::hash(), not here.
  uint64_t hash() const;

  // Copies fragment p's ranges, in order, out of `flat` (size total_elements()) into `slice`
  // (size fragment(p).numel). InvariantError on a size mismatch.
  void gather(int p, std::span<const float> flat, std::span<float> slice) const;
  std::vector<float> gather(int p, std::span<const float> flat) const;
  // The inverse: writes `slice` back into fragment p's ranges of `flat`; other elements untouched.
  void scatter(int p, std::span<const float> slice, std::span<float> flat) const;

  // "fragment 0: 3 tensors, 1234 elements in 2 ranges; ..." for logs.
  std::string describe() const;

 private:
  std::vector<Fragment> fragments_;
  std::vector<transport::Manifest> manifests_;  // per fragment
  std::vector<int> tensor_fragment_;  // per manifest entry
  uint64_t total_ = 0;
};

// The block index of "transformer.h.<i>.<rest>" (decimal i), or -1 for any other name.
int64_t transformer_block_index(const std::string& tensor_name);

}  // namespace longhaul::outer
