// The recycling byte-buffer pool behind Bytes: reuse, zero-filled reuse, cap, and sizing rule.
#include "transport/bytes.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace longhaul::transport {
namespace {

struct PoolGuard {  // restores the default cap and empties the cache around each test
  PoolGuard() { release_recycled(); set_recycle_limit_bytes(1ull << 30); }
  ~PoolGuard() { release_recycled(); set_recycle_limit_bytes(1ull << 30); }
};

TEST(Bytes, FreedLargeBufferIsReusedAndComesBackZeroed) {
  PoolGuard guard;
  const std::byte* first = nullptr;
  {
    Bytes a(4 << 20);
    std::fill(a.begin(), a.end(), std::byte{0xAB});
    first = a.data();
  }
  EXPECT_EQ(recycled_bytes_cached(), 4u << 20);
  Bytes b(3 << 20);  // fits (between the request and twice it): the same block
  EXPECT_EQ(b.data(), first);
  EXPECT_EQ(recycled_bytes_cached(), 0u);
  EXPECT_TRUE(std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{0}; }))
      << "a recycled buffer must not show the bytes of the one before";
}

TEST(Bytes, BlockMoreThanTwiceTheRequestIsNotUsed) {
  PoolGuard guard;
  { Bytes big(16 << 20); }
  Bytes small(2 << 20);
  EXPECT_EQ(recycled_bytes_cached(), 16u << 20) << "a 2 MiB request must not pin a 16 MiB block";
}

TEST(Bytes, CapBoundsTheCacheAndZeroDisablesIt) {
  PoolGuard guard;
  set_recycle_limit_bytes(6 << 20);
  {
    Bytes a(4 << 20), b(4 << 20);
  }
  EXPECT_EQ(recycled_bytes_cached(), 4u << 20) << "only one 4 MiB block fits under a 6 MiB cap";
  set_recycle_limit_bytes(0);
  EXPECT_EQ(recycled_bytes_cached(), 0u);
  { Bytes c(4 << 20); }
  EXPECT_EQ(recycled_bytes_cached(), 0u);
}

TEST(Bytes, ReleaseEmptiesTheCacheAndKeepsTheCap) {
  PoolGuard guard;
  set_recycle_limit_bytes(12 << 20);
  { Bytes a(4 << 20), b(4 << 20); }
  EXPECT_EQ(recycled_bytes_cached(), 8u << 20);
  release_recycled();
  EXPECT_EQ(recycled_bytes_cached(), 0u);
  EXPECT_EQ(recycle_limit_bytes(), 12u << 20);
  { Bytes c(4 << 20); }
  EXPECT_EQ(recycled_bytes_cached(), 4u << 20) << "the cache works again after a release";
}

TEST(Bytes, SmallBuffersBypassThePool) {
  PoolGuard guard;
  { Bytes a(kRecycleMinBytes - 1); }
  EXPECT_EQ(recycled_bytes_cached(), 0u);
}

}  // namespace
}  // namespace longhaul::transport
