// A hostile but authenticated site against a real coordinator process (real TLS, real sockets):
//  * every field of every site message with the wrong JSON type or out of range, deep nesting,
//    unknown types, messages before hello, far-future rounds: each closes only that connection,
//    names the field in the coordinator's log, is counted in /metrics by site and reason, and
//    the coordinator keeps running (and later exits 0 on SIGTERM, not 139);
//  * inflated token claims, the wrong encoding, a huge first upload and a flood of resyncs
//    during a real two-site run leave the honest sites' θ bitwise what it is without the
//    attacker.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "outer/cluster_util.h"
#include "outer/evil_site_util.h"
#include "outer/protocol.h"
#include "test_support.h"
#include "transport/channel_server.h"
#include "transport/codec.h"
#include "transport/https_get.h"

namespace longhaul::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using transport::Message;
namespace proto = outer::protocol;

bool closes_within(Evil& e, std::chrono::seconds t) {
  auto until = std::chrono::steady_clock::now() + t;
  while (std::chrono::steady_clock::now() < until) {
    if (!e.client.connected()) return true;
    try {
      e.client.receive(100ms);
    } catch (const std::exception&) {
      return true;
    }
  }
  return !e.client.connected();
}

// `v` with the value at path (one or two keys) replaced.
json with(json v, const std::vector<std::string>& path, json x) {
  if (path.size() == 1) v[path[0]] = std::move(x);
  else v[path[0]][path[1]] = std::move(x);
  return v;
}

std::string metrics_of(const Cluster& c) {
  transport::TlsFiles tls{c.root() / "certs/ca.crt", c.root() / "certs/evil.crt", c.root() / "certs/evil.key"};
  return transport::https_get("https://127.0.0.1:" + std::to_string(c.port()) + "/metrics", tls, 10000ms).body;
}

TEST(HostileSite, MalformedMessagesCloseOnlyThatConnectionAndAreCounted) {
  ClusterOptions o = EvilRun::options(1000);
  o.coordinator_overrides = {"coordinator.full_theta_per_window=100000"};
  EvilRun run("hostile_schema", 1000, o);
  const uint64_t mh = run.m.hash();
  const json good_hello = Evil::hello("evil", mh);
  const json good_upload = {{"run_id", run.evil->run_id}, {"round", 0}, {"site", "evil"}, {"fragment", 0},
                            {"tokens", 128},           {"steps", 1}};
  const json good_resync = {{"run_id", run.evil->run_id}, {"round", 0}, {"site", "evil"}, {"fragment", 0},
                            {"reason", "test"}};
  struct Case {
    std::string type;
    std::vector<std::string> path;
    json bad;
    bool joined;  // sent after a valid hello on the same connection
  };
  std::vector<Case> cases;
  auto both = [&](const std::string& type, std::vector<std::string> path, json wrong_type, json out_of_range,
                  bool joined) {
    cases.push_back({type, path, wrong_type, joined});
    if (!out_of_range.is_discarded()) cases.push_back({type, path, out_of_range, joined});
  };
  const json none = json(json::value_t::discarded);
  both("hello", {"site"}, 42, std::string(65, 'x'), false);
  both("hello", {"protocol"}, "2", none, false);
  both("hello", {"manifest_hash"}, 7, "zz" + std::string(14, '0'), false);
  both("hello", {"round"}, json::array(), -2, false);
  both("hello", {"train"}, "big", none, false);
  both("hello", {"train", "batch_size"}, 4.5, 0, false);
  both("hello", {"train", "grad_accum"}, true, uint64_t(1) << 63, false);
  both("hello", {"data"}, json::array({1}), none, false);
  both("hello", {"data", "num_shards"}, "1", 0, false);
  both("hello", {"data", "shard_index"}, nullptr, 5, false);
  both("hello", {"data", "val_fraction"}, "0.1", 0.9, false);
  both("upload", {"run_id"}, 1, std::string(200, 'r'), true);
  both("upload", {"round"}, "0", -5, true);
  both("upload", {"site"}, json::object(), "other-site", true);
  both("upload", {"fragment"}, 0.5, 7, true);
  both("upload", {"tokens"}, "128", -1, true);
  both("upload", {"steps"}, json::object({{"a", 1}}), 0, true);
  both("upload", {"train_loss"}, "low", 1e300, true);
  both("upload", {"compute_s"}, "fast", -3, true);
  both("upload", {"round"}, 1 << 30, none, true);  // a far-future round
  both("resync", {"run_id"}, false, none, true);
  both("resync", {"round"}, 1.5, none, true);
  both("resync", {"site"}, 3, none, true);
  both("resync", {"fragment"}, "0", -1, true);
  both("resync", {"reason"}, json::array(), std::string(5000, 'x'), true);

  int closed = 0;
  for (const auto& k : cases) {
    SCOPED_TRACE(k.type + " " + json(k.path).dump() + " = " + k.bad.dump().substr(0, 40));
    auto e = run.connect();
    e->run_id = run.evil->run_id;
    if (k.joined) {
      e->client.send(Message{proto::kHello, good_hello, {}});
      e->expect(proto::kWelcome);
    }
    const json& base = k.type == "hello" ? good_hello : k.type == "upload" ? good_upload : good_resync;
    e->client.send(Message{k.type, with(base, k.path, k.bad), {}});
    EXPECT_TRUE(closes_within(*e, 20s));
    closed += !e->client.connected();
  }
  EXPECT_EQ(closed, static_cast<int>(cases.size()));

  // Deep nesting, an unknown type, a message before hello, an oversized idempotency key.
  {
    auto e = run.connect();
    json nested = json::array();
    for (int i = 0; i < 40; ++i) nested = json::array({nested});
    e->client.send(Message{proto::kHello, with(good_hello, {"site"}, nested), {}});
    EXPECT_TRUE(closes_within(*e, 20s)) << "deeply nested hello";
  }
  {
    auto e = run.connect();
    e->client.send(Message{"upload", good_upload, {}});
    EXPECT_TRUE(closes_within(*e, 20s)) << "upload before hello";
  }
  {
    auto e = run.connect();
    e->client.send(Message{proto::kHello, good_hello, {}});
    e->expect(proto::kWelcome);
    e->client.send(Message{"no_such_type", {{"run_id", run.evil->run_id}}, {}});
    EXPECT_TRUE(closes_within(*e, 20s)) << "unknown message type";
  }

  std::string log = Cluster::tail(run.coord.log(), 1 << 22);
  for (const char* field : {"field 'site'", "field 'train.batch_size'", "field 'data.val_fraction'", "field 'tokens'",
                            "field 'fragment'", "field 'reason'", "which is not open", "before hello",
                            "nested deeper than", "unknown message type"})
    EXPECT_NE(log.find(field), std::string::npos) << "log lacks: " << field;

  // Still alive and serving: an honest upload on a fresh connection closes round 0.
  auto e = run.connect();
  e->run_id = run.evil->run_id;
  e->client.send(Message{proto::kHello, good_hello, {}});
  e->expect(proto::kWelcome);
  ASSERT_EQ(e->expect(proto::kRoundStart).header["round"], 0);
  transport::CodecOptions fp32;
  fp32.encoding = transport::Encoding::kFp32;
  e->upload(0, transport::encode(std::vector<float>(run.n, 1e-3f), run.m, fp32));
  EXPECT_EQ(e->expect(proto::kUploadAck).header["status"], proto::kAccepted);
  EXPECT_TRUE(e->expect(proto::kRoundResult).header["applied"].get<bool>());

  const std::string metrics = metrics_of(run.c);
  EXPECT_NE(metrics.find("longhaul_protocol_errors_total{site=\"evil\",reason=\"upload.tokens\"}"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("reason=\"hello.train.batch_size\""), std::string::npos) << metrics;
  run.coord.signal(SIGTERM);
  EXPECT_EQ(run.coord.wait(60s), 0) << Cluster::tail(run.coord.log());
}

// Two honest sites (real `longhaul site` processes) train 4 rounds; returns the coordinator's
// final θ hash. `attack` runs in the test thread while they train.
std::string honest_run(const std::string& name, const std::function<void(Cluster&)>& attack) {
  ClusterOptions o;
  o.rounds = 5;  // the attacker is active in 3 rounds; later rounds run while its flood is handled
  o.inner_steps = 3;
  o.min_sites = 2;
  // Round 0 waits for the attacker (it joins right after both honest sites); the reference run,
  // which has none, starts with the two after start_timeout_s. Rounds of this tiny model take
  // well under a second: without the wait, the run can end before the attacker is in.
  o.start_sites = 3;
  o.coordinator_overrides = {"coordinator.start_timeout_s=5"};
  o.deadline_s = 4;  // rounds in which the attacker joined but did not upload close at the deadline
  o.sites = {"site-a", "site-b", "evil"};
  Cluster c(name, o);
  Process coord = c.start_coordinator();
  if (c.port() <= 0) return "coordinator did not start: " + Cluster::tail(coord.log());
  Process a = c.start_site("site-a"), b = c.start_site("site-b");
  if (attack) attack(c);
  EXPECT_EQ(coord.wait(300s), 0) << Cluster::tail(coord.log());
  EXPECT_EQ(a.wait(60s), 0) << Cluster::tail(a.log());
  EXPECT_EQ(b.wait(60s), 0) << Cluster::tail(b.log());
  auto rounds = c.coordinator_rounds();
  if (rounds.size() != 5) return "rounds: " + std::to_string(rounds.size());
  for (const auto& r : rounds) EXPECT_EQ(r["sites"], json::array({"site-a", "site-b"})) << r.dump();
  return rounds.back()["param_hash"];
}

TEST(HostileSite, HonestThetaIsBitwiseUnaffectedByTokensEncodingHugeUploadsAndFloods) {
  const std::string reference = honest_run("hostile_ref", nullptr);
  int rejected = 0;
  const std::string attacked = honest_run("hostile_attack", [&](Cluster& c) {
    const transport::Manifest m = cluster_manifest();
    const size_t n = m.total_elements();
    transport::ClientOptions co;
    co.url = "wss://127.0.0.1:" + std::to_string(c.port()) + "/v1/ws";
    co.tls = {c.root() / "certs/ca.crt", c.root() / "certs/evil.crt", c.root() / "certs/evil.key"};
    json hello = Evil::hello("evil", m.hash());
    hello["data"]["num_shards"] = 3;
    hello["data"]["shard_index"] = 2;
    // Rounds 0..2: the attacker is a participant of every round and sends one poisoned upload
    // per round; in the last round it then floods resync requests.
    // The attacker joins only once both honest sites have: rounds then have the same honest
    // participants as in the reference run (an early attacker would let a round open without one).
    const auto until = std::chrono::steady_clock::now() + 120s;
    for (bool both = false; !both && std::chrono::steady_clock::now() < until;) {
      std::this_thread::sleep_for(100ms);
      try {
        json st = json::parse(transport::https_get("https://127.0.0.1:" + std::to_string(c.port()) + "/v1/status",
                                                   {co.tls.ca_cert, co.tls.cert, co.tls.key}, 5000ms)
                                  .body);
        both = st["sites"].contains("site-a") && st["sites"].contains("site-b") &&
               st["sites"]["site-a"].value("state", "") != "disconnected" &&
               st["sites"]["site-b"].value("state", "") != "disconnected";
      } catch (const std::exception&) {
      }
    }
    Evil e(co);
    e.client.connect();
    e.client.send(Message{proto::kHello, hello, {}});
    Message w = e.expect(proto::kWelcome, 120s);
    e.run_id = w.header.value("run_id", "");
    for (int attack = 0; attack < 3; ++attack) {
      Message rs = e.expect(proto::kRoundStart, 120s);
      if (rs.type.empty()) break;
      const int64_t r = rs.header["round"];
      transport::CodecOptions enc;
      enc.encoding = transport::parse_encoding(rs.header["upload_encoding"].get<std::string>());
      std::vector<float> x(n, 1e-3f);
      double tokens = 128;
      if (attack == 0) {
        std::fill(x.begin(), x.end(), 1e30f);  // huge but finite, in the very first round
      } else if (attack == 1) {
        tokens = 1e12;  // owns the average if believed (1e12 vs 3 x 128 honest tokens per step)
      } else {
        enc.encoding = transport::Encoding::kFp32;  // the round asked for int8
      }
      e.upload(r, transport::encode(x, m, enc), tokens);
      Message ack = e.expect(proto::kUploadAck, 60s);
      rejected += ack.header.value("status", "") == proto::kRejected;
      if (attack < 2) {
        EXPECT_EQ(e.expect(proto::kRoundResult, 120s).header.value("round", -1), r);
        continue;
      }
      // A flood of resyncs while the round is open: each would cost a full θ; over the
      // per-site budget the connection is closed.
      for (int i = 0; i < 20 && e.client.connected(); ++i) {
        try {
          e.client.send(Message{proto::kResync,
                                {{"run_id", e.run_id}, {"round", r}, {"site", "evil"}, {"fragment", 0},
                                 {"reason", "flood"}},
                                {}});
        } catch (const std::exception&) {
          break;
        }
      }
      EXPECT_TRUE(closes_within(e, 30s)) << "a resync flood must be cut off";
      EXPECT_NE(Cluster::tail(c.root() / "coordinator.log", 1 << 22).find("too many resyncs"), std::string::npos);
    }
  });
  EXPECT_EQ(rejected, 3);
  EXPECT_EQ(attacked, reference);
}

}  // namespace
}  // namespace longhaul::testing
