#include "transport/manifest.h"

#include <gtest/gtest.h>

using longhaul::transport::Manifest;

TEST(Manifest, OffsetsAndHash) {
  Manifest a;
  a.add("w", {2, 3});
  a.add("b", {3});
  EXPECT_EQ(a.entries()[1].offset, 6u);
  EXPECT_EQ(a.total_elements(), 9u);
  Manifest b = a;
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(a.diff(b), "");
  Manifest c;
  c.add("w", {3, 2});
  c.add("b", {3});
  EXPECT_NE(a.hash(), c.hash());
  EXPECT_NE(a.diff(c).find("shape [2,3] vs [3,2]"), std::string::npos) << a.diff(c);
}
