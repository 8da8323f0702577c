// Poisoned uploads against a real coordinator process: a hostile site (in this test process,
// real TLS client with a certificate from the run's CA) sends NaN, Inf, wrong-manifest and
// huge-norm pseudo-gradients. Each is refused with a reason, and θ stays bitwise unchanged.
#include <gtest/gtest.h>

#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <torch/torch.h>

#include "inner/flat_params.h"
#include "inner/gpt.h"
#include "outer/cluster_util.h"
#include "outer/evil_site_util.h"
#include "outer/param_hash.h"
#include "outer/protocol.h"
#include "transport/channel_client.h"
#include "transport/channel_server.h"
#include "transport/codec.h"

namespace longhaul::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using transport::Message;
namespace proto = outer::protocol;

// A fp32 payload whose element 0 is `bad` (the codec refuses to encode non-finite values, so a
// hostile sender crafts it: patch the float, then fix the chunk and header checksums).
transport::Bytes craft_fp32(std::vector<float> x, float bad, const transport::Manifest& m) {
  transport::CodecOptions o;
  o.encoding = transport::Encoding::kFp32;
  auto p = transport::encode(x, m, o);
  auto info = transport::inspect(p, x.size());
  EXPECT_EQ(info.chunks, 1u);
  EXPECT_EQ(info.compressed_chunks, 0u);
  const size_t table_end = 40 + 16, data = table_end + 8;
  std::memcpy(p.data() + data, &bad, 4);
  uint64_t cs = XXH3_64bits(p.data() + data, p.size() - data);
  std::memcpy(p.data() + 40 + 8, &cs, 8);
  uint64_t hs = XXH3_64bits(p.data(), table_end);
  std::memcpy(p.data() + table_end, &hs, 8);
  return p;
}

TEST(Poison, NanInfWrongManifestAndHugeNormAreRefusedAndThetaUnchanged) {
  EvilRun run("poison", 5);
  Cluster& c = run.c;
  Process& coord = run.coord;
  const transport::Manifest& m = run.m;
  const size_t n = run.n;
  Evil& evil = *run.evil;
  std::vector<float>& theta = run.theta;
  ASSERT_EQ(proto::hex64(outer::param_hash(theta)), run.welcome.header["param_hash"]);

  auto apply_result = [&](int64_t round) {
    Message r = evil.expect(proto::kRoundResult);
    EXPECT_EQ(r.header["round"], round);
    if (!r.payload.empty()) {
      std::vector<float> u(n);
      transport::decode(r.payload, u, m.hash());
      for (size_t i = 0; i < n; ++i) theta[i] += u[i];
    }
    EXPECT_EQ(proto::hex64(outer::param_hash(theta)), r.header["param_hash"]);
    return r;
  };
  auto ack_of = [&](int64_t round) {
    Message a = evil.expect(proto::kUploadAck);
    EXPECT_EQ(a.header["round"], round);
    return a;
  };

  // Round 0: an honest small pseudo-gradient, accepted; it sets the norm reference.
  ASSERT_EQ(evil.expect(proto::kRoundStart).header["round"], 0);
  std::vector<float> good(n, 1e-3f);
  transport::CodecOptions fp32;
  fp32.encoding = transport::Encoding::kFp32;
  evil.upload(0, transport::encode(good, m, fp32));
  EXPECT_EQ(ack_of(0).header["status"], proto::kAccepted);
  Message r0 = apply_result(0);
  EXPECT_TRUE(r0.header["applied"].get<bool>());
  const std::string hash_after_0 = r0.header["param_hash"];

  // Wrong manifest: same length, other names.
  transport::Manifest other;
  other.add("not.the.model", {static_cast<int64_t>(n)});
  struct Case {
    const char* what;
    transport::Bytes payload;
    const char* reason;
  };
  std::vector<float> huge(n, 1.f);  // norm ~1000x the reference
  std::vector<Case> cases = {
      {"NaN", craft_fp32(good, std::numeric_limits<float>::quiet_NaN(), m), "non-finite"},
      {"Inf", craft_fp32(good, std::numeric_limits<float>::infinity(), m), "non-finite"},
      {"wrong manifest", transport::encode(good, other, fp32), "manifest"},
      {"huge norm", transport::encode(huge, m, fp32), "is above"},  // the θ or the median reference
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const int64_t round = 1 + static_cast<int64_t>(k);
    ASSERT_EQ(evil.expect(proto::kRoundStart).header["round"], round) << cases[k].what;
    evil.upload(round, cases[k].payload);
    Message a = ack_of(round);
    EXPECT_EQ(a.header["status"], proto::kRejected) << cases[k].what;
    EXPECT_NE(a.header["reason"].get<std::string>().find(cases[k].reason), std::string::npos)
        << cases[k].what << ": " << a.header["reason"];
    Message r = apply_result(round);
    EXPECT_FALSE(r.header["applied"].get<bool>()) << cases[k].what;
    EXPECT_EQ(r.header["param_hash"], hash_after_0) << cases[k].what << ": θ changed";
  }
  evil.expect(proto::kRunComplete);
  EXPECT_EQ(coord.wait(60s), 0) << Cluster::tail(coord.log());
  auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 5u);
  for (size_t k = 1; k < rounds.size(); ++k) EXPECT_EQ(rounds[k]["param_hash"], hash_after_0);
  std::string log = Cluster::tail(coord.log(), 1 << 20);
  EXPECT_NE(log.find("REJECTED: non-finite"), std::string::npos);
  EXPECT_NE(log.find("REJECTED: undecodable"), std::string::npos);
  EXPECT_NE(log.find("REJECTED: norm"), std::string::npos);
}


// A late upload (for a round already applied) is dropped with status "late" and leaves θ
// alone; a site that asks for a resync gets the full current θ again (and the round start).
TEST(Poison, LateUploadIsDroppedAndResyncSendsTheCurrentTheta) {
  EvilRun run("late", 2);
  Process& coord = run.coord;
  const transport::Manifest& m = run.m;
  const size_t n = run.n;
  Evil& evil = *run.evil;
  transport::CodecOptions fp32;
  fp32.encoding = transport::Encoding::kFp32;
  std::vector<float> good(n, 1e-3f);

  ASSERT_EQ(evil.expect(proto::kRoundStart).header["round"], 0);
  evil.upload(0, transport::encode(good, m, fp32));
  EXPECT_EQ(evil.expect(proto::kUploadAck).header["status"], proto::kAccepted);
  Message r0 = evil.expect(proto::kRoundResult);
  ASSERT_TRUE(r0.header["applied"].get<bool>());
  const std::string hash_after_0 = r0.header["param_hash"];
  ASSERT_EQ(evil.expect(proto::kRoundStart).header["round"], 1);

  // Round 0 is closed and applied: a second upload for it must not touch θ.
  evil.upload(0, transport::encode(good, m, fp32));
  Message late = evil.expect(proto::kUploadAck);
  EXPECT_EQ(late.header["round"], 0);
  EXPECT_EQ(late.header["status"], proto::kLate) << late.header.dump();

  // A full resync returns θ after round 0, bitwise (the late upload changed nothing).
  evil.client.send(Message{proto::kResync, {{"run_id", evil.run_id}, {"round", 1}, {"site", "evil"},
                                            {"fragment", 0}, {"reason", "test: hash mismatch"}}, {}});
  Message again = evil.expect(proto::kWelcome);
  EXPECT_EQ(again.header["param_hash"], hash_after_0);
  std::vector<float> theta(n);
  transport::decode(again.payload, theta, m.hash());
  EXPECT_EQ(proto::hex64(outer::param_hash(theta)), hash_after_0);
  EXPECT_EQ(evil.expect(proto::kRoundStart).header["round"], 1);

  evil.upload(1, transport::encode(good, m, fp32));
  EXPECT_EQ(evil.expect(proto::kUploadAck).header["status"], proto::kAccepted);
  evil.expect(proto::kRoundResult);
  evil.expect(proto::kRunComplete);
  EXPECT_EQ(coord.wait(60s), 0) << Cluster::tail(coord.log());
  std::string log = Cluster::tail(coord.log(), 1 << 20);
  EXPECT_NE(log.find("asks for a full resync"), std::string::npos);
  EXPECT_NE(log.find("for round 0 dropped"), std::string::npos);
}

}  // namespace
}  // namespace longhaul::testing
