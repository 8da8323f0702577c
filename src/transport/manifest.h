// The meeting point between LibTorch and the wire: a replica's parameters as ONE flat fp32
// vector, described by a manifest of (name, shape, offset) entries in a fixed order (the
// model's parameter order, nanoGPT state_dict names). Fragments of the vector are ranges
// [offset, offset + numel). src/transport never sees a torch::Tensor, only this.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace longhaul::transport {

struct TensorEntry {
  std::string name;            // e.g. "transformer.h.0.attn.c_attn.weight"
  std::vector<int64_t> shape;  // row-major, as torch reports it
  uint64_t offset = 0;         // in elements, into the flat vector
  uint64_t numel() const;      // product of shape (1 for a scalar)
};

class Manifest {
 public:
  Manifest() = default;
  // Appends a tensor at the current end of the flat vector.
  void add(std::string name, std::vector<int64_t> shape);

  const std::vector<TensorEntry>& entries() const { return entries_; }
  uint64_t total_elements() const { return total_; }
  // Fingerprint of names, shapes, offsets and dtype (fp32): xxh64, stable across processes
  // and platforms. Two replicas can exchange flat vectors iff their hashes are equal.
  uint64_t hash() const;
  // Human-readable first difference ("tensor 3: name 'a' vs 'b'"), empty when equal.
  std::string diff(const Manifest& other) const;

 private:
  std::vector<TensorEntry> entries_;
  uint64_t total_ = 0;
};

}  // namespace longhaul::transport
