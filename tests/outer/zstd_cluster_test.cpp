// zstd on the wire, end to end: a real coordinator and three real site processes over TLS with
// sync.zstd_level = 3 and fp32 both ways. Uploads and round results travel compressed (fewer
// bytes than before the lossless stage, which the metrics line reports exactly), and every
// replica still decodes bitwise the θ the coordinator published.
#include <gtest/gtest.h>

#include <cstdio>

#include <torch/torch.h>

#include "inner/flat_params.h"
#include "inner/gpt.h"
#include "outer/cluster_util.h"
#include "transport/codec.h"

namespace longhaul::testing {
namespace {

using namespace std::chrono_literals;

// The fp32 payload size of the cluster's model with zstd off (cluster_util's tiny GPT).
uint64_t fp32_payload_bytes() {
  inner::GptConfig g;
  g.n_layer = 1, g.n_head = 2, g.n_embd = 32, g.block_size = 32, g.vocab_size = 256;
  inner::Gpt model(g);
  auto m = inner::param_manifest(*model);
  std::vector<float> x(m.total_elements(), 0.25f);
  transport::CodecOptions o;
  o.encoding = transport::Encoding::kFp32;
  return transport::encode(x, m, o).size();
}

TEST(ZstdCluster, CompressedUploadsAndResultsKeepEveryReplicaBitwiseEqual) {
  ClusterOptions o;
  o.rounds = 3;
  o.inner_steps = 3;
  o.upload_encoding = "fp32";
  o.download_encoding = "fp32";
  o.coordinator_overrides = {"sync.zstd_level=3"};
  Cluster c("zstd", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::vector<Process> sites = c.start_sites();
  ASSERT_EQ(coord.wait(240s), 0) << Cluster::tail(coord.log());
  for (auto& p : sites) EXPECT_EQ(p.wait(60s), 0) << Cluster::tail(p.log());

  const uint64_t raw = fp32_payload_bytes();
  auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 3u);
  for (const auto& r : rounds) {
    ASSERT_EQ(r["sites"].size(), 3u) << r.dump();
    EXPECT_EQ(r["zstd_level"], 3);
    EXPECT_EQ(r["bytes_up_raw"].get<uint64_t>(), 3 * raw) << r.dump();
    EXPECT_EQ(r["bytes_down_raw"].get<uint64_t>(), 3 * raw) << r.dump();
    EXPECT_LT(r["bytes_up"].get<uint64_t>(), r["bytes_up_raw"].get<uint64_t>()) << r.dump();
    EXPECT_LT(r["bytes_down"].get<uint64_t>(), r["bytes_down_raw"].get<uint64_t>()) << r.dump();
    std::printf("round %d: up %llu of %llu raw, down %llu of %llu raw\n", r["round"].get<int>(),
                (unsigned long long)r["bytes_up"].get<uint64_t>(), (unsigned long long)(3 * raw),
                (unsigned long long)r["bytes_down"].get<uint64_t>(), (unsigned long long)(3 * raw));
  }
  // Every site holds bitwise the published θ after every round.
  for (const auto& s : o.sites) {
    auto sr = c.site_rounds(s);
    ASSERT_EQ(sr.size(), rounds.size()) << s;
    for (size_t i = 0; i < sr.size(); ++i) {
      EXPECT_EQ(sr[i]["param_hash"], rounds[i]["param_hash"]) << s << " round " << i;
      EXPECT_EQ(sr[i]["hash_mismatches"], 0) << s;
    }
  }
}

}  // namespace
}  // namespace longhaul::testing
