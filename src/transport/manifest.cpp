#include "transport/manifest.h"

#include <xxhash.h>

#include <sstream>

#include "common/error.h"

namespace longhaul::transport {

uint64_t TensorEntry::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) {
    LH_CHECK(d >= 0, "negative dimension in ", name);
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

void Manifest::add(std::string name, std::vector<int64_t> shape) {
  TensorEntry e{std::move(name), std::move(shape), total_};
  total_ += e.numel();
  entries_.push_back(std::move(e));
}

uint64_t Manifest::hash() const {
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0x4c6f6e6768617531ULL);  // "Longhau1"
  auto put_u64 = [&](uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));  // little-endian
    XXH64_update(st, b, 8);
  };
  put_u64(entries_.size());
  for (const auto& e : entries_) {
    put_u64(e.name.size());
    XXH64_update(st, e.name.data(), e.name.size());
    put_u64(e.shape.size());
    for (int64_t d : e.shape) put_u64(static_cast<uint64_t>(d));
    put_u64(e.offset);
    XXH64_update(st, "f32", 3);
  }
  uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  return h;
}

std::string Manifest::diff(const Manifest& other) const {
  std::ostringstream os;
  if (entries_.size() != other.entries_.size()) {
    os << "tensor count " << entries_.size() << " vs " << other.entries_.size();
    return os.str();
  }
  for (size_t i = 0; i < entries_.size(); ++i) {
    const auto& a = entries_[i];
    const auto& b = other.entries_[i];
    if (a.name != b.name) {
      os << "tensor " << i << ": name '" << a.name << "' vs '" << b.name << "'";
      return os.str();
    }
    if (a.shape != b.shape) {
      auto dims = [](const std::vector<int64_t>& s) {
        std::string r = "[";
        for (size_t k = 0; k < s.size(); ++k) r += (k ? "," : "") + std::to_string(s[k]);
        return r + "]";
      };
      os << "tensor '" << a.name << "': shape " << dims(a.shape) << " vs " << dims(b.shape);
      return os.str();
    }
  }
  return "";
}

}  // namespace longhaul::transport
