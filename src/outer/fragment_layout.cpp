#include "outer/fragment_layout.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "common/error.h"

namespace longhaul::outer {

int64_t transformer_block_index(const std::string& name) {
  static constexpr std::string_view kPrefix = "transformer.h.";
  if (name.size() <= kPrefix.size() || name.compare(0, kPrefix.size(), kPrefix) != 0) return -1;
  std::size_t i = kPrefix.size();
  int64_t block = 0;
  const std::size_t digits_begin = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') {
    if (i - digits_begin >= 9) return -1;  // > 999'999'999 blocks: not a block name
    block = block * 10 + (name[i] - '0');
    ++i;
  }
  // Needs at least one digit, then ".<rest>" with a non-empty rest.
  if (i == digits_begin || i + 1 >= name.size() || name[i] != '.') return -1;
  return block;
}

FragmentLayout FragmentLayout::strided(const transport::Manifest& manifest, int fragments) {
  const auto& entries = manifest.entries();
  if (fragments < 1)
    throw UserError("sync.fragments = " + std::to_string(fragments) + ": need at least 1 fragment");
  std::vector<int64_t> block(entries.size());
  int64_t n_blocks = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    block[i] = transformer_block_index(entries[i].name);
    n_blocks = std::max(n_blocks, block[i] + 1);
  }
  if (fragments > 1 && fragments > n_blocks)
    throw UserError("sync.fragments = " + std::to_string(fragments) + " exceeds the model's " +
                    std::to_string(n_blocks) +
                    " transformer block(s) (model.n_layer): fragments are " +
                    "strided over whole blocks, so need 1 <= sync.fragments <= model.n_layer");
  if (static_cast<uint64_t>(n_blocks) >
      entries.size())  // each block has >= 1 tensor: gaps for sure
    throw UserError("manifest names transformer.h." + std::to_string(n_blocks - 1) +
                    " but has only " + std::to_string(entries.size()) +
                    " tensors: block indices must run 0..n-1");
  std::vector<bool> seen(static_cast<std::size_t>(n_blocks), false);
  for (int64_t b : block)
    if (b >= 0) seen[static_cast<std::size_t>(b)] = true;
  for (int64_t b = 0; b < n_blocks; ++b)
    if (!seen[static_cast<std::size_t>(b)])
      throw UserError("manifest has transformer.h." + std::to_string(n_blocks - 1) +
                      " but no transformer.h." + std::to_string(b) +
                      ": block indices must run 0..n-1 for a fragment layout");

  FragmentLayout l;
  l.total_ = manifest.total_elements();
  l.fragments_.resize(static_cast<std::size_t>(fragments));
  l.tensor_fragment_.assign(entries.size(), -1);
  std::vector<uint64_t> load(static_cast<std::size_t>(fragments), 0);
  // Blocks: round-robin.
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (block[i] < 0) continue;
    const int p = static_cast<int>(block[i] % fragments);
    l.tensor_fragment_[i] = p;
    load[static_cast<std::size_t>(p)] += entries[i].numel();
  }
  // Everything else: largest first (stable: manifest order on ties), to the lightest fragment.
  std::vector<std::size_t> rest;
  for (std::size_t i = 0; i < entries.size(); ++i)
    if (block[i] < 0) rest.push_back(i);
  std::stable_sort(rest.begin(), rest.end(), [&](std::size_t a, std::size_t b) {
    return entries[a].numel() > entries[b].numel();
  });
  for (std::size_t i : rest) {
    const auto lightest =
        std::min_element(load.begin(), load.end());  // first minimum: lowest index
    const int p = static_cast<int>(lightest - load.begin());
    l.tensor_fragment_[i] = p;
    *lightest += entries[i].numel();
  }
  // Ranges in manifest (= offset) order, merging neighbours of the same fragment.
  for (std::size_t i = 0; i < entries.size(); ++i) {
    Fragment& f = l.fragments_[static_cast<std::size_t>(l.tensor_fragment_[i])];
    const uint64_t n = entries[i].numel();
    f.tensors.push_back(i);
    f.numel += n;
    if (n == 0) continue;
    if (!f.ranges.empty() && f.ranges.back().offset + f.ranges.back().numel == entries[i].offset)
      f.ranges.back().numel += n;
    else
      f.ranges.push_back({entries[i].offset, n});
  }
  l.manifests_.resize(l.fragments_.size());
  for (std::size_t p = 0; p < l.fragments_.size(); ++p)
    for (std::size_t i : l.fragments_[p].tensors) l.manifests_[p].add(entries[i].name, entries[i].shape);
  return l;
}

const Fragment& FragmentLayout::fragment(int p) const {
  LH_CHECK(p >= 0 && p < size(), "fragment ", p, " of ", size());
  return fragments_[static_cast<std::size_t>(p)];
}

const transport::Manifest& FragmentLayout::manifest(int p) const {
  LH_CHECK(p >= 0 && p < size(), "fragment ", p, " of ", size());
  return manifests_[static_cast<std::size_t>(p)];
}

int FragmentLayout::fragment_of_tensor(std::size_t i) const {
  LH_CHECK(i < tensor_fragment_.size(), "tensor ", i, " of ", tensor_fragment_.size());
  return tensor_fragment_[i];
}

uint64_t FragmentLayout::hash() const {
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0x4c6846726167310aULL);  // "LhFrag1\n"
  auto put_u64 = [&](uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));  // little-endian
    XXH64_update(st, b, 8);
  };
  XXH64_update(st, "strided-v1", 10);
  put_u64(fragments_.size());
  put_u64(total_);
  for (const Fragment& f : fragments_) {
    put_u64(f.ranges.size());
    for (const FragmentRange& r : f.ranges) {
      put_u64(r.offset);
      put_u64(r.numel);
    }
  }
  const uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  return h;
}

void FragmentLayout::gather(int p, std::span<const float> flat, std::span<float> slice) const {
  const Fragment& f = fragment(p);
  LH_CHECK_EQ(flat.size(), total_);
  LH_CHECK_EQ(slice.size(), f.numel);
  std::size_t at = 0;
  for (const FragmentRange& r : f.ranges) {
    std::memcpy(slice.data() + at, flat.data() + r.offset, r.numel * sizeof(float));
    at += r.numel;
  }
}

std::vector<float> FragmentLayout::gather(int p, std::span<const float> flat) const {
  std::vector<float> out(fragment(p).numel);
  gather(p, flat, out);
  return out;
}

void FragmentLayout::scatter(int p, std::span<const float> slice, std::span<float> flat) const {
  const Fragment& f = fragment(p);
  LH_CHECK_EQ(flat.size(), total_);
  LH_CHECK_EQ(slice.size(), f.numel);
  std::size_t at = 0;
  for (const FragmentRange& r : f.ranges) {
    std::memcpy(flat.data() + r.offset, slice.data() + at, r.numel * sizeof(float));
    at += r.numel;
  }
}

std::string FragmentLayout::describe() const {
  std::ostringstream os;
  for (int p = 0; p < size(); ++p) {
    const Fragment& f = fragments_[static_cast<std::size_t>(p)];
    os << (p ? "; " : "") << "fragment " << p << ": " << f.tensors.size() << " tensors, " << f.numel
       << " elements in " << f.ranges.size() << " range(s)";
  }
  return os.str();
}

}  // namespace longhaul::outer
