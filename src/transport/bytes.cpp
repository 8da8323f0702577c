#include "transport/bytes.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

namespace longhaul::transport {
namespace {

struct Pool {
  std::mutex mu;
  std::multimap<std::size_t, void*> free_by_capacity;  // cached blocks
  std::unordered_map<void*, std::size_t> capacity;      // every live or cached large block
  uint64_t cached = 0;
  uint64_t limit = 1ull << 30;

  // Frees cached blocks, largest first, until at most `target` bytes stay cached. Holds mu.
  void trim(uint64_t target) {
    while (cached > target && !free_by_capacity.empty()) {
      auto it = std::prev(free_by_capacity.end());
      cached -= it->first;
      capacity.erase(it->second);
      std::free(it->second);
      free_by_capacity.erase(it);
    }
  }
};

// Never destroyed: buffers may be freed by other static destructors after main returns.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

}  // namespace

namespace bytes_pool {

void* pool_allocate(std::size_t bytes) {
  if (bytes < kRecycleMinBytes) return ::operator new(bytes);
  Pool& p = pool();
  {
    std::lock_guard lock(p.mu);
    auto it = p.free_by_capacity.lower_bound(bytes);
    if (it != p.free_by_capacity.end() && it->first / 2 <= bytes) {
      void* block = it->second;
      p.cached -= it->first;
      p.free_by_capacity.erase(it);
      return block;
    }
  }
  void* block = std::malloc(bytes);
  if (block == nullptr) throw std::bad_alloc();
  std::lock_guard lock(p.mu);
  p.capacity.emplace(block, bytes);
  return block;
}

void pool_deallocate(void* block, std::size_t bytes) noexcept {
  if (bytes < kRecycleMinBytes) {
    ::operator delete(block);
    return;
  }
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  const auto it = p.capacity.find(block);
  const std::size_t cap = it->second;  // >= bytes: a recycled block may be larger than its use
  if (p.cached + cap <= p.limit) {
    p.free_by_capacity.emplace(cap, block);
    p.cached += cap;
    return;
  }
  p.capacity.erase(it);
  std::free(block);
}

}  // namespace bytes_pool

void set_recycle_limit_bytes(uint64_t bytes) {
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  p.limit = bytes;
  p.trim(bytes);
}

void release_recycled() {
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  p.trim(0);
}

uint64_t recycle_limit_bytes() {
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  return p.limit;
}

uint64_t recycled_bytes_cached() {
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  return p.cached;
}

}  // namespace longhaul::transport
