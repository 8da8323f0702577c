#include "outer/fragment_merge.h"

#include "common/error.h"

namespace longhaul::outer {

void add_to_fragment(const FragmentLayout& layout, int p, std::span<const float> slice, std::span<float> flat) {
  const Fragment& f = layout.fragment(p);
  LH_CHECK(slice.size() == f.numel && flat.size() == layout.total_elements(), "fragment ", p, ": slice ",
           slice.size(), " of ", f.numel, ", flat ", flat.size(), " of ", layout.total_elements());
  std::size_t k = 0;
  for (const FragmentRange& r : f.ranges)
    for (uint64_t i = r.offset; i < r.offset + r.numel; ++i) flat[i] += slice[k++];
}

void merge_fragment(const FragmentLayout& layout, int p, float alpha, std::span<const float> global,
                    std::span<float> local) {
  const Fragment& f = layout.fragment(p);
  LH_CHECK(global.size() == layout.total_elements() && local.size() == layout.total_elements(),
           "merge: sizes ", global.size(), ", ", local.size(), " of ", layout.total_elements());
  for (const FragmentRange& r : f.ranges)
    merge_range(alpha, global.subspan(r.offset, r.numel), local.subspan(r.offset, r.numel));
}

void merge_range(float alpha, std::span<const float> global, std::span<float> local) {
  LH_CHECK(alpha >= 0.f && alpha < 1.f, "merge alpha ", alpha);
  LH_CHECK(global.size() == local.size(), "merge: ranges of ", global.size(), " and ", local.size());
  const float beta = 1.f - alpha;
  for (std::size_t i = 0; i < local.size(); ++i)
    local[i] = alpha == 0.f ? global[i] : alpha * local[i] + beta * global[i];
}

}  // namespace longhaul::outer
