// End to end on loopback: a real coordinator and real site processes (the `longhaul` binary),
// mutual TLS with certificates from a fresh CA, a tiny GPT, a small synthetic corpus.
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <thread>

#include <torch/torch.h>

#include "common/atomic_file.h"
#include "inner/checkpoint.h"
#include "inner/flat_params.h"
#include "inner/gpt.h"
#include "inner/safetensors_io.h"
#include "outer/cluster_util.h"
#include "outer/param_hash.h"
#include "outer/protocol.h"
#include "outer/coordinator.h"
#include "outer/coordinator_checkpoint.h"
#include "transport/codec.h"
#include "transport/https_get.h"

namespace longhaul::testing {
namespace {

using namespace std::chrono_literals;

// After a coordinator restart: the checkpoint is at `rounds` with one outer step per round, and
// metrics.jsonl lists every round exactly once.
void expect_every_round_applied_once(const Cluster& c, int64_t rounds) {
  auto st = outer::load_coordinator_checkpoint(outer::coordinator_checkpoint_path(c.coordinator_dir()));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->meta["next_round"], rounds);
  EXPECT_EQ(st->meta["outer_steps"], rounds) << "an outer step was applied twice or lost";
  std::set<int64_t> seen;
  for (const auto& r : c.coordinator_rounds()) {
    int64_t k = r["round"];
    EXPECT_TRUE(seen.insert(k).second) << "round " << k << " closed twice";
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), rounds);
}

// Restarts the coordinator on `port` (its log: "-restart"), lets the run finish and checks
// that each of the run's `rounds` rounds was applied exactly once and every site agrees on θ.
void restart_coordinator_and_expect_exactly_once(Cluster& c, Process& coord, std::vector<Process>& sites,
                                                 int port, int64_t rounds) {
  coord = c.start_coordinator(port, "-restart");
  ASSERT_EQ(c.port(), port) << Cluster::tail(coord.log());
  ASSERT_EQ(coord.wait(240s), 0) << Cluster::tail(coord.log());
  for (auto& p : sites) EXPECT_EQ(p.wait(60s), 0) << Cluster::tail(p.log());
  expect_every_round_applied_once(c, rounds);
  expect_hashes_agree(c, c.options().sites, false);
}

size_t codec_bytes(const std::string& encoding) {
  torch::manual_seed(0);
  inner::GptConfig g;
  g.n_layer = 1, g.n_head = 2, g.n_embd = 32, g.block_size = 32, g.vocab_size = 256;
  inner::Gpt model(g);
  auto m = inner::param_manifest(*model);
  std::vector<float> zeros(m.total_elements(), 0.5f);
  transport::CodecOptions o;
  o.encoding = transport::parse_encoding(encoding);
  return transport::encode(zeros, m, o).size();
}

TEST(Cluster, ThreeSitesOverTlsAgreeEveryRoundAndLossFalls) {
  ClusterOptions o;
  o.rounds = 5;
  o.inner_steps = 6;
  o.coordinator_overrides = {"coordinator.spool_min_bytes=0",  // every upload waits on disk until handled
                             "coordinator.report_memcpy=true"};
  Cluster c("e2e", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::vector<Process> sites = c.start_sites();
  ASSERT_EQ(coord.wait(240s), 0) << Cluster::tail(coord.log());
  for (size_t i = 0; i < sites.size(); ++i)
    EXPECT_EQ(sites[i].wait(60s), 0) << Cluster::tail(sites[i].log());

  auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 5u);
  expect_hashes_agree(c, o.sites, true);
  auto init = Cluster::read_events(c.coordinator_dir() / "metrics.jsonl", "init");
  ASSERT_EQ(init.size(), 1u);
  double first = init[0]["eval_loss"], last = rounds.back()["eval_loss"];
  EXPECT_LT(last, first - 0.3) << "eval loss " << first << " -> " << last;
  // Bytes: every round, 3 int8 uploads of exactly the codec's size; downloads fp32.
  const size_t up = codec_bytes("int8"), down = codec_bytes("fp32");
  for (const auto& r : rounds) {
    EXPECT_EQ(r["sites"].size(), 3u);
    EXPECT_EQ(r["bytes_up"].get<uint64_t>(), 3 * up) << r.dump();
    EXPECT_EQ(r["bytes_down"].get<uint64_t>(), 3 * down) << r.dump();
    // The round tail (issue 13 §1): every site uploaded, so it starts at the last upload's
    // handling (fold_s) and adds the close; the close's phases lie within it; the memcpy
    // yardstick is there (coordinator.report_memcpy).
    const double tail = r["tail_s"], close = r["close_s"], fold = r["fold_s"];
    EXPECT_GT(fold, 0.0) << r.dump();
    EXPECT_NEAR(tail, close + fold, 1e-9) << r.dump();
    double phases = 0;
    for (const char* k : {"aggregation", "outer_step", "encode", "apply_update", "hash_and_norm", "round_state",
                          "journal", "publish"}) {
      ASSERT_TRUE(r["tail_phases"].contains(k)) << k << ": " << r.dump();
      phases += r["tail_phases"][k].get<double>();
    }
    EXPECT_LE(phases, close) << r.dump();
    EXPECT_GE(r["checkpoint_wait_s"].get<double>(), 0.0) << r.dump();
    EXPECT_LE(r["checkpoint_wait_s"].get<double>(), close) << r.dump();
    EXPECT_GT(r["memcpy_s"].get<double>(), 0.0) << r.dump();
  }
  // The final published θ is exported as a nanoGPT-loadable model in the coordinator's run dir.
  inner::Gpt exported = inner::load_exported_model(c.coordinator_dir());
  std::vector<float> flat(inner::param_manifest(*exported).total_elements());
  inner::params_to_flat(*exported, flat);
  EXPECT_EQ(outer::protocol::hex64(outer::param_hash(flat)), rounds.back()["param_hash"]);
  // Every upload went through the spool (coordinator.spool_min_bytes = 0), which is left empty.
  const std::string coord_log = Cluster::tail(coord.log(), 1 << 20);
  size_t via_spool = 0;
  for (size_t at = 0; (at = coord_log.find(" bytes via the spool, ", at)) != std::string::npos; ++at) ++via_spool;
  EXPECT_EQ(via_spool, 15u) << coord_log;
  EXPECT_TRUE(fs::is_empty(c.coordinator_dir() / "spool"));
  std::printf("eval loss %.3f -> %.3f over %zu rounds; %zu B per int8 upload\n", first, last,
              rounds.size(), up);
}

TEST(Cluster, SiteKilledMidRoundRoundClosesAtDeadlineAndSiteRejoins) {
  ClusterOptions o;
  o.rounds = 30;  // long enough for the restarted site to load and rejoin
  o.inner_steps = 20;
  o.deadline_s = 6;
  Cluster c("kill_site", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::map<std::string, Process> sites;
  for (const auto& s : o.sites) sites[s] = c.start_site(s);
  ASSERT_TRUE(c.wait_for_rounds(1, 120s)) << Cluster::tail(coord.log());
  // Kill site-c while it trains.
  ASSERT_TRUE(Cluster::wait_until_training(sites["site-c"], 60s)) << Cluster::tail(sites["site-c"].log());
  sites["site-c"].signal(SIGKILL);
  EXPECT_EQ(sites["site-c"].wait(10s), 128 + SIGKILL);
  {  // HTTPS on the same port while the round waits for its deadline.
    const std::string base = "https://127.0.0.1:" + std::to_string(c.port());
    transport::TlsFiles tls{c.root() / "certs/ca.crt", c.root() / "certs/site-a.crt",
                            c.root() / "certs/site-a.key"};
    auto h = transport::https_get(base + "/healthz", tls, 10000ms);
    EXPECT_EQ(h.status, 200);
    auto st = transport::https_get(base + "/v1/status", tls, 10000ms);
    ASSERT_EQ(st.status, 200) << st.body;
    auto j = nlohmann::json::parse(st.body);
    EXPECT_EQ(j["inner_steps"], o.inner_steps);
    EXPECT_GE(j["round"].get<int64_t>(), 1);
    EXPECT_EQ(j["param_hash"].get<std::string>().size(), 16u);
    EXPECT_TRUE(j["sites"].contains("site-c")) << st.body;
    auto mt = transport::https_get(base + "/metrics", tls, 10000ms);
    EXPECT_NE(mt.body.find("longhaul_rounds_total "), std::string::npos) << mt.body;
    EXPECT_NE(mt.body.find("longhaul_bytes_received_total{site=\"site-a\"}"), std::string::npos);
  }
  // A later round closes without site-c, and only at its deadline (2 of 3 >= min_sites).
  nlohmann::json without_c;
  auto until = std::chrono::steady_clock::now() + 90s;
  while (without_c.is_null() && std::chrono::steady_clock::now() < until) {
    for (const auto& r : c.coordinator_rounds())
      if (r["sites"].size() == 2u && r["participants"] == 3) without_c = r;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(without_c.is_null()) << Cluster::tail(coord.log());
  EXPECT_GE(without_c["duration_s"].get<double>(), o.deadline_s - 0.5) << without_c.dump();
  ASSERT_TRUE(c.restart_site_holding_the_others(sites, "site-c", "-restart", 120s))
      << Cluster::tail(sites["site-c"].log());
  ASSERT_EQ(coord.wait(240s), 0) << Cluster::tail(coord.log());
  for (auto& [s, p] : sites) EXPECT_EQ(p.wait(60s), 0) << s << Cluster::tail(p.log());
  auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 30u);
  EXPECT_EQ(rounds.back()["sites"].size(), 3u) << "site-c did not rejoin: " << rounds.back().dump();
  auto c_rounds = c.site_rounds("site-c");
  ASSERT_FALSE(c_rounds.empty());
  EXPECT_EQ(c_rounds.back()["round"], 29) << "the restarted site-c did not finish the run";
  expect_hashes_agree(c, o.sites, false);
  std::ifstream log(c.root() / "site-c-restart.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("resumed from"), std::string::npos) << text;
}

// On a slow link the last round's result and run_complete are still on their way when the
// coordinator exits (it waits 2 s after sending them): the close reaches the site behind
// them, and the site must handle what arrived before it instead of dialling a coordinator that
// is gone. Here each fp32 result takes ~3.5 s at the emulated 0.2 Mbit/s.
TEST(Cluster, SitesOnASlowLinkHearRunCompleteBehindTheLastResult) {
  ClusterOptions o;
  o.rounds = 2;
  o.inner_steps = 2;
  Cluster c("slow_link_end", o);
  for (const auto& s : o.sites) {
    std::ofstream f(c.root() / (s + ".toml"), std::ios::app);
    f << "[link]\nemulate_mbps = 0.2\n";
  }
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::vector<Process> sites = c.start_sites();
  ASSERT_EQ(coord.wait(240s), 0) << Cluster::tail(coord.log());
  for (size_t i = 0; i < sites.size(); ++i) {
    EXPECT_EQ(sites[i].wait(60s), 0) << Cluster::tail(sites[i].log());
    const auto fin = Cluster::read_events(c.site_dir(o.sites[i]) / "metrics.jsonl", "final");
    ASSERT_FALSE(fin.empty()) << o.sites[i];
    EXPECT_TRUE(fin.back()["done"].get<bool>()) << o.sites[i] << " did not hear run_complete";
    EXPECT_EQ(fin.back()["round"], 2) << o.sites[i];
  }
  EXPECT_EQ(c.coordinator_rounds().size(), 2u);
}

// A site killed while its upload is still on the (emulated, slow) link restarts from its one
// checkpoint, which holds that pending upload: it re-sends it under the same idempotency key
// instead of training the round again, and the round counts it once.
TEST(Cluster, SiteKilledMidUploadResendsItsPendingUploadAfterRestart) {
  ClusterOptions o;
  o.rounds = 3;
  o.inner_steps = 2;
  o.deadline_s = 120;  // the round waits for the restarted site
  Cluster c("resend_pending", o);
  {  // site-c's uploads take ~1.8 s (22 KB at 0.1 Mbit/s): time to kill it mid-upload
    std::ofstream f(c.root() / "site-c.toml", std::ios::app);
    f << "[link]\nemulate_mbps = 0.1\n";
  }
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::map<std::string, Process> sites;
  for (const auto& s : o.sites) sites[s] = c.start_site(s);
  // Round 0's upload: give the checkpoint after it 0.6 s to be written, then kill.
  const auto until = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < until &&
         Cluster::tail(sites["site-c"].log(), 100000).find("round 0: uploading") == std::string::npos)
    std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(600ms);
  sites["site-c"].signal(SIGKILL);
  EXPECT_EQ(sites["site-c"].wait(10s), 128 + SIGKILL);
  EXPECT_TRUE(c.coordinator_rounds().empty()) << "round 0 closed without site-c's upload";
  sites["site-c"] = c.start_site("site-c", "-restart");
  ASSERT_EQ(coord.wait(300s), 0) << Cluster::tail(coord.log());
  for (auto& [s, p] : sites) EXPECT_EQ(p.wait(60s), 0) << s << Cluster::tail(p.log());
  const auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 3u);
  EXPECT_EQ(rounds[0]["sites"].size(), 3u) << "site-c's re-sent upload counts in round 0: " << rounds[0].dump();
  const std::string restarted = Cluster::tail(c.root() / "site-c-restart.log", 1 << 20);
  EXPECT_NE(restarted.find("round 0 upload pending from before the restart"), std::string::npos) << restarted;
  EXPECT_NE(restarted.find("re-sending round 0 upload after reconnect"), std::string::npos) << restarted;
  EXPECT_EQ(restarted.find("round 0: training"), std::string::npos) << "round 0 trained twice: " << restarted;
  expect_hashes_agree(c, o.sites, false);
}

// The steps of a site's uploads (its metrics' "upload" lines, one per round trained) add up to
// the optimizer step of its newest checkpoint, whose data cursor drew batch_size windows per
// step: nothing trained is lost or counted twice. Returns that step.
int64_t expect_steps_match_uploads(const Cluster& c, const std::string& site) {
  const auto ckpt = inner::latest_checkpoint(c.site_dir(site));
  EXPECT_TRUE(ckpt) << site << " has no checkpoint";
  if (!ckpt) return -1;
  const inner::CheckpointMeta meta = inner::read_checkpoint_meta(*ckpt);
  int64_t uploaded = 0;
  std::set<int64_t> rounds;
  for (const auto& u : Cluster::read_events(c.site_dir(site) / "metrics.jsonl", "upload")) {
    EXPECT_TRUE(rounds.insert(u["round"].get<int64_t>()).second) << site << " trained round " << u["round"] << " twice";
    uploaded += u["steps"].get<int64_t>();
  }
  EXPECT_EQ(meta.step, uploaded) << site << ": " << ckpt->string() << " is at step " << meta.step
                                 << " but its uploads carried " << uploaded << " steps";
  EXPECT_EQ(meta.sampler.draws, static_cast<uint64_t>(meta.step) * 4)  // [train] batch_size = 4
      << site << ": the data cursor moved apart from the step count";
  return meta.step;
}

// SIGTERM while a site trains (issue #14 §4): the steps trained since its last upload are
// discarded with the data cursor and AdamW state they moved; the restart resumes from the
// last checkpoint, trains the open round again, and its step count stays equal to the steps it
// uploaded (before, the half round's steps stayed in the step count and the cursor).
TEST(Cluster, SiteStoppedMidRoundResumesFromItsLastUploadWithStepsAndDataCursorInStep) {
  ClusterOptions o;
  o.rounds = 6;
  o.inner_steps = 40;
  Cluster c("stop_mid_round", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  // site-c's steps emulated 20x slower: a round of 40 steps lasts seconds, so the stop below
  // lands mid-round however fast the machine is.
  const std::vector<std::string> slow = {"--set", "train.devices=[{ device = \"cpu\", slowdown = 20.0 }]"};
  std::map<std::string, Process> sites;
  for (const auto& s : o.sites) sites[s] = s == "site-c" ? c.start_site(s, "", slow) : c.start_site(s);
  ASSERT_TRUE(c.wait_for_rounds(2, 180s)) << Cluster::tail(coord.log());
  ASSERT_TRUE(Cluster::wait_until_training(sites["site-c"], 60s)) << Cluster::tail(sites["site-c"].log());
  std::this_thread::sleep_for(200ms);  // a few of the round's steps
  sites["site-c"].signal(SIGTERM);
  ASSERT_EQ(sites["site-c"].wait(30s), 0) << Cluster::tail(sites["site-c"].log());
  const std::string stopped = Cluster::tail(sites["site-c"].log(), 1 << 20);
  EXPECT_NE(stopped.find("inner step(s) trained since the last checkpoint (step "), std::string::npos) << stopped;
  const int64_t at_stop = expect_steps_match_uploads(c, "site-c");
  ASSERT_GT(at_stop, 0);

  sites["site-c"] = c.start_site("site-c", "-restart", slow);
  ASSERT_EQ(coord.wait(300s), 0) << Cluster::tail(coord.log());
  for (auto& [s, p] : sites) EXPECT_EQ(p.wait(60s), 0) << s << Cluster::tail(p.log());
  const std::string restarted = Cluster::tail(c.root() / "site-c-restart.log", 1 << 20);
  EXPECT_NE(restarted.find("(step " + std::to_string(at_stop) + ","), std::string::npos)
      << "the restart did not resume at the last upload's step " << at_stop << ": " << restarted;
  const auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 6u);
  for (const auto& r : rounds) EXPECT_EQ(r["sites"].size(), 3u) << "a round without site-c: " << r.dump();
  for (const auto& s : o.sites) EXPECT_EQ(expect_steps_match_uploads(c, s), 6 * o.inner_steps) << s;
  expect_hashes_agree(c, o.sites, false);
}

TEST(Cluster, CoordinatorKilledAndRestartedResumesWithoutReapplyingARound) {
  ClusterOptions o;
  o.rounds = 8;
  o.inner_steps = 6;
  Cluster c("kill_coord", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  const int port = c.port();
  std::vector<Process> sites = c.start_sites();
  ASSERT_TRUE(c.wait_for_rounds(2, 120s)) << Cluster::tail(coord.log());
  // Rounds of this size close every ~50 ms: site-a is paused so that at most one more round
  // closes before the kill, which must land mid-run.
  sites[0].signal(SIGSTOP);
  coord.signal(SIGKILL);
  EXPECT_EQ(coord.wait(10s), 128 + SIGKILL);
  sites[0].signal(SIGCONT);
  ASSERT_LT(c.coordinator_rounds().size(), 8u) << "the run ended before the kill";
  std::this_thread::sleep_for(1s);
  restart_coordinator_and_expect_exactly_once(c, coord, sites, port, 8);
}

// Issue 13 §1: the checkpoint is written in the background after the publish. A kill inside
// that write (LONGHAUL_TEST_CHECKPOINT_PAUSE_S holds it midway, after θ master) leaves the old
// checkpoint intact, and the restart redoes the published round from the round journal: no
// round lost or applied twice, the redone θ is bitwise what the sites applied.
// A checkpoint write in flight (or left by a kill): its temp file; empty when there is none.
fs::path checkpoint_temp_file(const fs::path& dir) {
  const auto t = temp_files_of(outer::coordinator_checkpoint_path(dir));
  return t.empty() ? fs::path() : t.front();
}

// Starts the cluster with every background checkpoint write held midway
// (LONGHAUL_TEST_CHECKPOINT_PAUSE_S) and SIGKILLs the coordinator inside round 0's write, after
// round 0's result was published. `published0`: the θ hash round 0 published.
void kill_inside_checkpoint_write(Cluster& c, Process& coord, std::vector<Process>& sites, std::string& published0) {
  ::setenv("LONGHAUL_TEST_CHECKPOINT_PAUSE_S", "60", 1);
  coord = c.start_coordinator();
  ::unsetenv("LONGHAUL_TEST_CHECKPOINT_PAUSE_S");
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  const fs::path dir = c.coordinator_dir();
  sites = c.start_sites();
  ASSERT_TRUE(c.wait_for_rounds(1, 120s)) << Cluster::tail(coord.log());
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (checkpoint_temp_file(dir).empty() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(20ms);
  ASSERT_FALSE(checkpoint_temp_file(dir).empty()) << "no checkpoint write in flight\n" << Cluster::tail(coord.log());
  ASSERT_TRUE(fs::exists(dir / "journal" / "r0.json"));
  published0 = c.coordinator_rounds().at(0)["param_hash"];
  coord.signal(SIGKILL);
  EXPECT_EQ(coord.wait(10s), 128 + SIGKILL);
  // The checkpoint on disk is the complete one from before round 0, not a torn file.
  auto st = outer::load_coordinator_checkpoint(outer::coordinator_checkpoint_path(dir));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->meta["next_round"], 0);
}

// A 5-round cluster whose coordinator kill_inside_checkpoint_write() killed.
struct KilledInsideCheckpointWrite {
  ClusterOptions o = [] {
    ClusterOptions x;
    x.rounds = 5;
    x.inner_steps = 6;
    return x;
  }();
  Cluster c;
  Process coord;
  std::vector<Process> sites;
  std::string published0;
  explicit KilledInsideCheckpointWrite(const std::string& name) : c(name, o) {
    kill_inside_checkpoint_write(c, coord, sites, published0);
  }
};

TEST(Cluster, CoordinatorKilledDuringABackgroundCheckpointWriteRedoesTheRoundFromItsJournal) {
  KilledInsideCheckpointWrite k("kill_ckpt_write");
  if (HasFatalFailure()) return;
  auto& [o, c, coord, sites, published0] = k;
  const int port = c.port();
  const fs::path dir = c.coordinator_dir();
  restart_coordinator_and_expect_exactly_once(c, coord, sites, port, 5);
  const std::string log = Cluster::tail(coord.log(), 1 << 20);
  EXPECT_NE(log.find("round 0 was published before the last stop but its checkpoint was not written: redone "
                     "from the journal (3 upload(s)), θ hash " + published0 + " as published"),
            std::string::npos)
      << log;
  EXPECT_TRUE(checkpoint_temp_file(dir).empty()) << "the killed write's temp file was left behind";
  EXPECT_TRUE(fs::is_empty(dir / "journal")) << "journal files outlived their checkpoint";
}

// A journal record whose redo does not give the θ the round published (damaged, or another
// build's): the coordinator refuses to continue, naming the record, and leaves the run dir as
// it was (the checkpoint before the round, the journal kept for inspection).
TEST(Cluster, CoordinatorRefusesAJournalRecordWhoseRedoDiffersFromThePublishedTheta) {
  KilledInsideCheckpointWrite k("kill_ckpt_tamper");
  if (HasFatalFailure()) return;
  auto& [o, c, coord, sites, published0] = k;
  const int port = c.port();
  const fs::path dir = c.coordinator_dir();
  const fs::path record = dir / "journal" / "r0.json";
  nlohmann::json rec = nlohmann::json::parse(read_file(record));
  rec["param_hash"] = "0123456789abcdef";
  std::ofstream(record) << rec.dump();
  coord = c.start_coordinator(port, "-restart");
  EXPECT_NE(coord.wait(120s), 0) << Cluster::tail(coord.log());
  const std::string log = Cluster::tail(coord.log(), 1 << 20);
  EXPECT_NE(log.find(record.string() + ": cannot redo round 0: redone, θ hash is " + published0 +
                     " but the round published 0123456789abcdef (coordinator.ckpt holds the state before "
                     "round 0; the run dir is left as it is)"),
            std::string::npos)
      << log;
  auto st = outer::load_coordinator_checkpoint(outer::coordinator_checkpoint_path(dir));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->meta["next_round"], 0) << "a refused redo must not write a checkpoint";
  EXPECT_TRUE(fs::exists(record));
}

// A background checkpoint write that hangs (a stalled disk; here held by the test pause) ends
// the coordinator after coordinator.checkpoint_timeout_s with exit status 3 and a message
// naming the file, instead of holding every site forever; the restart on the same run dir
// redoes the published round from the journal and the run completes, each round once.
TEST(Cluster, CoordinatorWhoseCheckpointWriteStallsExitsWithStatus3AndItsRestartLosesNothing) {
  ClusterOptions o;
  o.rounds = 5;
  o.inner_steps = 6;
  o.coordinator_overrides = {"coordinator.checkpoint_timeout_s=2"};
  Cluster c("ckpt_stall", o);
  ::setenv("LONGHAUL_TEST_CHECKPOINT_PAUSE_S", "600", 1);
  Process coord = c.start_coordinator();
  ::unsetenv("LONGHAUL_TEST_CHECKPOINT_PAUSE_S");
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  const int port = c.port();
  const fs::path dir = c.coordinator_dir();
  std::vector<Process> sites = c.start_sites();
  ASSERT_EQ(coord.wait(120s), outer::kExitCheckpointStalled) << Cluster::tail(coord.log());
  const std::string log = Cluster::tail(coord.log(), 1 << 20);
  EXPECT_NE(log.find("the checkpoint write to " + outer::coordinator_checkpoint_path(dir).string() +
                     " did not finish within coordinator.checkpoint_timeout_s = 2 s: exiting with code 3"),
            std::string::npos)
      << log;
  EXPECT_EQ(c.coordinator_rounds().size(), 1u) << "round 1 cannot close before round 0's checkpoint";
  auto st = outer::load_coordinator_checkpoint(outer::coordinator_checkpoint_path(dir));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->meta["next_round"], 0);
  EXPECT_TRUE(fs::exists(dir / "journal" / "r0.json"));
  restart_coordinator_and_expect_exactly_once(c, coord, sites, port, 5);
  EXPECT_TRUE(checkpoint_temp_file(dir).empty()) << "the stalled write's temp file was left behind";
  EXPECT_TRUE(fs::is_empty(dir / "journal")) << "journal files outlived their checkpoint";
}

// The coordinator's own disk refuses the round journal mid-run (here a file takes the journal
// directory's place): the coordinator stops (exit 1) naming the file, instead of refusing a
// site's upload for it; the upload stays with its site. Once the disk is back, the restart
// runs the open round again with the re-sent uploads: every round once, nothing lost.
TEST(Cluster, CoordinatorWhoseJournalCannotBeWrittenStopsAndItsRestartLosesNothing) {
  ClusterOptions o;
  o.rounds = 5;
  o.inner_steps = 6;
  Cluster c("journal_fail", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  const int port = c.port();
  const fs::path journal = c.coordinator_dir() / "journal", away = c.coordinator_dir() / "journal.away";
  std::vector<Process> sites = c.start_sites();
  ASSERT_TRUE(c.wait_for_rounds(1, 120s)) << Cluster::tail(coord.log());
  sites[0].signal(SIGSTOP);  // the open round waits for site-a: the failure lands mid-run
  fs::rename(journal, away);
  std::ofstream(journal) << "not a directory";
  sites[0].signal(SIGCONT);
  ASSERT_EQ(coord.wait(120s), 1) << Cluster::tail(coord.log());
  const std::string log = Cluster::tail(coord.log(), 1 << 20);
  EXPECT_NE(log.find("longhaul: fatal: "), std::string::npos) << log;
  EXPECT_NE(log.find(journal.string() + "/r"), std::string::npos) << "the file is named: " << log;
  EXPECT_NE(log.find(" in the round journal: "), std::string::npos) << log;
  EXPECT_EQ(log.find("REJECTED"), std::string::npos) << "an upload was refused for the coordinator's own disk";
  EXPECT_LT(c.coordinator_rounds().size(), 5u);
  fs::remove(journal);
  fs::rename(away, journal);
  restart_coordinator_and_expect_exactly_once(c, coord, sites, port, 5);
  for (const auto& r : c.coordinator_rounds())  // the upload the coordinator could not keep came back
    EXPECT_EQ(r["sites"].size(), 3u) << r.dump();
}

TEST(Cluster, InnerStepsEditedMidRunTakesEffectNextRound) {
  ClusterOptions o;
  o.rounds = 12;
  o.inner_steps = 3;
  Cluster c("live_h", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::vector<Process> sites = c.start_sites();
  ASSERT_TRUE(c.wait_for_rounds(1, 120s)) << Cluster::tail(coord.log());
  // Rounds of this size close every ~50 ms, faster than the watcher's poll: site-c is paused
  // while the edit is made, so at most the open round (and one more, when site-c's upload for
  // it was already sent) can close before the coordinator has read the change.
  sites[2].signal(SIGSTOP);
  const size_t closed_before_edit = c.coordinator_rounds().size();
  ASSERT_TRUE(c.edit_coordinator_config("inner_steps = 3", "inner_steps = 7"));
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (Cluster::tail(coord.log(), 1 << 20).find("inner_steps 3 -> 7") == std::string::npos &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(20ms);
  sites[2].signal(SIGCONT);
  ASSERT_EQ(coord.wait(240s), 0) << Cluster::tail(coord.log());
  for (auto& p : sites) EXPECT_EQ(p.wait(60s), 0) << Cluster::tail(p.log());
  auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 12u);
  // Rounds closed before the edit ran H=3; from some later round on, every round runs H=7.
  // (A round keeps the H it was announced with; the policy is read when a round opens, so a
  // round reports the H of the policy in force at its opening: see round lines' inner_steps.)
  for (size_t i = 0; i < closed_before_edit; ++i) EXPECT_EQ(rounds[i]["inner_steps"], 3);
  size_t first7 = rounds.size();
  for (size_t i = 0; i < rounds.size(); ++i)
    if (rounds[i]["inner_steps"] == 7) {
      first7 = i;
      break;
    }
  ASSERT_LT(first7, rounds.size()) << "the edit never took effect\n" << Cluster::tail(coord.log());
  EXPECT_GE(first7, closed_before_edit) << "applied to a round that had already closed";
  // At most: the round open at the edit, one more that site-c had already uploaded for, and one
  // whose line was not yet written when closed_before_edit was read.
  EXPECT_LE(first7, closed_before_edit + 3) << "the edit took effect later than the next round";
  for (size_t i = first7; i < rounds.size(); ++i) EXPECT_EQ(rounds[i]["inner_steps"], 7) << i;
  // Every site trained exactly the H its round announced (batch 4 x block 32 tokens per step).
  for (const auto& s : o.sites)
    for (const auto& r : c.site_rounds(s)) {
      const int64_t k = r["round"];
      EXPECT_EQ(r["tokens"].get<int64_t>(), rounds[k]["inner_steps"].get<int64_t>() * 4 * 32)
          << s << " round " << k;
    }
  std::string log = Cluster::tail(coord.log(), 1 << 20);
  EXPECT_NE(log.find("inner_steps 3 -> 7"), std::string::npos);
}

TEST(Cluster, SigtermStopsSitesAndCoordinatorCleanly) {
  ClusterOptions o;
  o.rounds = 1000;
  o.inner_steps = 10;
  Cluster c("sigterm", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::vector<Process> sites = c.start_sites();
  ASSERT_TRUE(c.wait_for_rounds(2, 120s)) << Cluster::tail(coord.log());
  sites[1].signal(SIGTERM);  // mid-run, most likely mid-round
  EXPECT_EQ(sites[1].wait(30s), 0) << Cluster::tail(sites[1].log());
  coord.signal(SIGTERM);
  EXPECT_EQ(coord.wait(30s), 0) << Cluster::tail(coord.log());
  for (size_t i : {0, 2}) {
    sites[i].signal(SIGINT);  // Ctrl-C, while reconnecting to the stopped coordinator
    EXPECT_EQ(sites[i].wait(30s), 0) << Cluster::tail(sites[i].log());
  }
  // The coordinator's checkpoint says where it stopped; a restart would resume there.
  auto st = outer::load_coordinator_checkpoint(outer::coordinator_checkpoint_path(c.coordinator_dir()));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->meta["next_round"].get<int64_t>(), static_cast<int64_t>(c.coordinator_rounds().size()));
}

// A site that was down when the last round closed learns on reconnect that the run is
// complete (the coordinator lingers for it) and exits 0, instead of retrying forever.
TEST(Cluster, SiteDownAtTheEndIsToldTheRunIsCompleteWhenItReconnects) {
  ClusterOptions o;
  o.rounds = 3;
  o.inner_steps = 3;
  o.deadline_s = 3;
  Cluster c("linger", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::map<std::string, Process> sites;
  for (const auto& s : o.sites) sites[s] = c.start_site(s);
  ASSERT_TRUE(c.wait_for_rounds(1, 120s)) << Cluster::tail(coord.log());
  sites["site-c"].signal(SIGKILL);
  EXPECT_EQ(sites["site-c"].wait(10s), 128 + SIGKILL);
  // The remaining rounds close at their deadlines with 2 of 3 sites (min_sites = 2).
  ASSERT_TRUE(c.wait_for_rounds(3, 120s)) << Cluster::tail(coord.log());
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(coord.running()) << "the coordinator should linger for site-c";
  sites["site-c"] = c.start_site("site-c", "-late");
  EXPECT_EQ(sites["site-c"].wait(120s), 0) << Cluster::tail(sites["site-c"].log());
  EXPECT_NE(Cluster::tail(sites["site-c"].log()).find("run complete"), std::string::npos);
  EXPECT_EQ(coord.wait(60s), 0) << Cluster::tail(coord.log());
  for (const char* s : {"site-a", "site-b"}) EXPECT_EQ(sites[s].wait(30s), 0) << s;
  EXPECT_EQ(c.coordinator_rounds().size(), 3u);
  // The site remembers: restarted on its run dir after the coordinator has gone, it exits 0 at
  // once (a systemd restart or an operator) instead of dialling the finished run forever.
  ASSERT_TRUE(fs::exists(c.site_dir("site-a") / "run_complete.json"));
  Process again = c.start_site("site-a", "-again");
  EXPECT_EQ(again.wait(60s), 0) << Cluster::tail(again.log());
  EXPECT_NE(Cluster::tail(again.log()).find("holds a completed run"), std::string::npos) << Cluster::tail(again.log());
}

// A coordinator restarted on a run that has already finished (e.g. killed after the last
// round's checkpoint, or restarted by systemd) does not exit at once: a site that missed the
// end (here: down while the first coordinator lingered) is welcomed with the final θ and told
// the run is complete, instead of dialling a finished run forever.
TEST(Cluster, CoordinatorRestartedOnAFinishedRunTellsALateSiteTheRunIsComplete) {
  ClusterOptions o;
  o.rounds = 3;
  o.inner_steps = 3;
  o.deadline_s = 3;
  o.coordinator_overrides = {"coordinator.linger_s=8"};
  Cluster c("finished_restart", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  const int port = c.port();
  std::map<std::string, Process> sites;
  for (const auto& s : o.sites) sites[s] = c.start_site(s);
  ASSERT_TRUE(c.wait_for_rounds(1, 120s)) << Cluster::tail(coord.log());
  sites["site-c"].signal(SIGKILL);
  EXPECT_EQ(sites["site-c"].wait(10s), 128 + SIGKILL);
  EXPECT_EQ(coord.wait(120s), 0) << Cluster::tail(coord.log());  // 3 rounds, then 8 s of lingering
  for (const char* s : {"site-a", "site-b"}) EXPECT_EQ(sites[s].wait(30s), 0) << s;
  sites["site-c"] = c.start_site("site-c", "-late");  // dials until the coordinator is back
  coord = c.start_coordinator(port, "-restart");
  EXPECT_EQ(sites["site-c"].wait(120s), 0) << Cluster::tail(sites["site-c"].log());
  EXPECT_NE(Cluster::tail(sites["site-c"].log()).find("run complete"), std::string::npos);
  EXPECT_EQ(coord.wait(60s), 0) << Cluster::tail(coord.log());
  EXPECT_NE(Cluster::tail(coord.log(), 1 << 20).find("already finished 3 rounds"), std::string::npos);
  const auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 3u);
  const auto finals = Cluster::read_events(c.site_dir("site-c") / "metrics.jsonl", "final");
  ASSERT_FALSE(finals.empty());
  EXPECT_EQ(finals.back()["param_hash"], rounds.back()["param_hash"]) << "site-c did not end with the final θ";
}

// coordinator.allowed_sites is live: removing a site from the file mid-run closes its
// connection at once, it cannot rejoin (HTTP 403: the site exits with the reason), and the run
// goes on with the others (min_sites = 2).
TEST(Cluster, SiteRemovedFromAllowedSitesMidRunIsDisconnectedAndRefused) {
  ClusterOptions o;
  o.rounds = 20;  // rounds of 3 steps go fast: the run must outlast the revocation
  o.inner_steps = 3;
  o.deadline_s = 5;
  Cluster c("revoke", o);
  Process coord = c.start_coordinator();
  ASSERT_GT(c.port(), 0) << Cluster::tail(coord.log());
  std::vector<Process> sites = c.start_sites();
  ASSERT_TRUE(c.wait_for_rounds(2, 120s)) << Cluster::tail(coord.log());
  // Rounds close every ~50 ms, faster than the watcher's poll: site-a is paused until the edit
  // is applied, so the run cannot end before it (a round needs site-a or its 5 s deadline).
  sites[0].signal(SIGSTOP);
  ASSERT_TRUE(c.edit_coordinator_config("allowed_sites = [\"site-a\", \"site-b\", \"site-c\"]",
                                         "allowed_sites = [\"site-a\", \"site-b\"]"));
  // The coordinator applies the edit (closing site-c's connection) and logs it; every round
  // that opens after that runs without site-c.
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (Cluster::tail(coord.log(), 1 << 20).find("coordinator.allowed_sites now [site-a, site-b]") == std::string::npos &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(20ms);
  const size_t closed_by_then = c.coordinator_rounds().size();
  sites[0].signal(SIGCONT);
  const int rc = sites[2].wait(120s);
  EXPECT_NE(rc, 0) << "the revoked site exits with the refusal";
  EXPECT_NE(rc, -1) << Cluster::tail(sites[2].log());
  EXPECT_NE(Cluster::tail(sites[2].log(), 1 << 16).find("not on the allow-list"), std::string::npos)
      << Cluster::tail(sites[2].log());
  ASSERT_EQ(coord.wait(240s), 0) << Cluster::tail(coord.log());
  for (int i = 0; i < 2; ++i) EXPECT_EQ(sites[i].wait(60s), 0) << Cluster::tail(sites[i].log());
  auto rounds = c.coordinator_rounds();
  ASSERT_EQ(rounds.size(), 20u);
  ASSERT_LT(closed_by_then + 1, rounds.size()) << "the run ended before the revocation took effect";
  for (size_t i = closed_by_then + 1; i < rounds.size(); ++i) {  // (+1: the round open at the revocation)
    const auto& in = rounds[i]["sites"];
    EXPECT_EQ(std::count(in.begin(), in.end(), "site-c"), 0) << "round " << i << ": " << in.dump();
  }
  EXPECT_NE(Cluster::tail(coord.log(), 1 << 20).find("coordinator.allowed_sites now [site-a, site-b]"), std::string::npos);
  EXPECT_EQ(Cluster::tail(coord.log(), 1 << 20).find("lingering"), std::string::npos)
      << "the coordinator waited at the end for the revoked site";
}

}  // namespace
}  // namespace longhaul::testing
