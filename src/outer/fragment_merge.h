// What a site does with a fragment's outer update (Streaming DiLoCo, arXiv 2501.18512, Alg. 2):
// the replicas' copy of the global θ gains the published update, and the site's local
// parameters take that fragment back from it, mixed with what they learned meanwhile.
//
// Units: elements of the flat fp32 vector (transport/manifest.h); `flat`, `global`, `local`
// span all of it, `slice` is fragment p's gather order (FragmentLayout::gather).
#pragma once

#include <span>

#include "outer/fragment_layout.h"

namespace longhaul::outer {

// flat[p] += slice, element by element in fp32: every replica (and the coordinator) computes
// bitwise the same sums from the same decoded update.
void add_to_fragment(const FragmentLayout& layout, int p, std::span<const float> slice, std::span<float> flat);

// local[p] ← α·local[p] + (1 − α)·global[p] (sync.merge_alpha = α ∈ [0, 1)); other fragments
// untouched. α = 0 copies global[p] exactly (the blocking case: local = θ after the exchange).
// With overlap (sync.overlap_steps = τ > 0) α keeps part of the τ steps trained while the
// fragment was in flight; the paper's choice α = 0.5 is the default.
void merge_fragment(const FragmentLayout& layout, int p, float alpha, std::span<const float> global,
                    std::span<float> local);
// The same arithmetic on one contiguous range (local and global the same size), e.g. a piece of
// a fragment merged straight into the model's parameters.
void merge_range(float alpha, std::span<const float> global, std::span<float> local);

}  // namespace longhaul::outer
