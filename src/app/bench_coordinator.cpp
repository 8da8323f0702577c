// `longhaul bench coordinator --sites K`: a real coordinator process under load from K sites
// that upload at the same moment. The sites are protocol clients in this process (real TLS,
// real WebSockets, certificates from a throwaway CA; they send a fixed pseudo-gradient instead
// of training, so K can exceed the machine's cores). Measured: the coordinator's peak RSS
// (VmHWM from /proc), its per-round tail (last upload -> result sent: `tail_s` of its metrics
// lines) against one memcpy of θ measured here, and the round wall time.
// Output: one JSON line {"sites","parameters","coordinator_peak_rss_mb","theta_mb",
// "rss_over_theta","tail_s_median","memcpy_s","tail_over_memcpy",...}.
#include <CLI/CLI.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "app/commands.h"
#include "common/atomic_file.h"
#include "common/error.h"
#include "inner/flat_params.h"
#include "inner/gpt.h"
#include "outer/protocol.h"
#include "transport/certs.h"
#include "transport/channel_client.h"
#include "transport/codec.h"

namespace longhaul::app {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using transport::Message;
namespace proto = outer::protocol;

struct LoadArgs {
  int sites = 8;
  int rounds = 3;
  int64_t n_layer = 4, n_embd = 448;  // ~9.8M parameters
  std::string encoding = "int8";
  std::string dir;                    // work dir (default: a temp dir, removed)
  int64_t spool_min_bytes = 1 << 20;  // coordinator.spool_min_bytes (2^40: uploads stay in memory)
};

uint64_t vm_hwm_kb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6));
  return 0;
}

// One fake site: joins, then per round uploads `payload` and waits for the result.
void run_site(const std::string& id, int index, int sites, const transport::ClientOptions& co, uint64_t mh,
              const transport::Bytes& payload, std::atomic<int>& failures) {
  try {
    transport::ChannelClient c(co);
    c.connect();
    c.send(Message{proto::kHello,
                   {{"site", id},
                    {"protocol", proto::kVersion},
                    {"manifest_hash", proto::hex64(mh)},
                    {"round", -1},
                    {"train", {{"batch_size", 4}, {"grad_accum", 1}}},
                    {"data", {{"num_shards", sites}, {"shard_index", index}, {"val_fraction", 0.1}}}},
                   {}});
    std::string run_id;
    const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(30);
    while (std::chrono::steady_clock::now() < until) {
      auto m = c.receive(std::chrono::milliseconds(200));
      if (!m) {
        if (!c.connected()) throw std::runtime_error("disconnected");
        continue;
      }
      if (m->type == proto::kWelcome) run_id = m->header.value("run_id", "");
      if (m->type == proto::kRunComplete) return;
      if (m->type == proto::kRoundStart) {
        Message up{proto::kUpload,
                   {{"run_id", run_id}, {"round", m->header["round"]}, {"site", id}, {"fragment", 0},
                    {"tokens", 128}, {"steps", 1}},
                   payload};
        c.send(std::move(up));
      }
    }
    throw std::runtime_error("no run_complete within 30 min");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench coordinator: site %s: %s\n", id.c_str(), e.what());
    ++failures;
  }
}

int run_load(const LoadArgs& a) {
  if (a.sites < 1 || a.sites > 256) throw UserError("--sites must be in [1, 256]");
  const fs::path dir = a.dir.empty() ? fs::temp_directory_path() / ("lh_bench_coord_" + std::to_string(::getpid()))
                                     : fs::path(a.dir);
  fs::create_directories(dir / "certs");
  transport::create_ca(dir / "ca");
  transport::issue_cert(dir / "ca", "coordinator", {"localhost"}, {"127.0.0.1"}, 30, dir / "certs");
  std::vector<std::string> ids;
  for (int i = 0; i < a.sites; ++i) {
    ids.push_back("load-" + std::to_string(i));
    transport::issue_cert(dir / "ca", ids.back(), {}, {}, 30, dir / "certs");
  }
  inner::GptConfig g;
  g.n_layer = a.n_layer, g.n_head = 4, g.n_embd = a.n_embd, g.block_size = 32, g.vocab_size = 256;
  torch::manual_seed(0);
  inner::Gpt model(g);
  const auto manifest = inner::param_manifest(*model);
  const size_t n = manifest.total_elements();
  std::ostringstream cfg;
  cfg << "[coordinator]\nrounds = " << a.rounds << "\nport = 0\nstart_sites = " << a.sites << "\nlinger_s = 5\n"
      << "max_tokens_per_step = 1000000\nspool_min_bytes = " << a.spool_min_bytes << "\n[tls]\nca_cert = \"certs/ca.crt\"\ncert = \"certs/coordinator.crt\"\n"
      << "key = \"certs/coordinator.key\"\n[model]\nn_layer = " << g.n_layer << "\nn_head = 4\nn_embd = " << g.n_embd
      << "\nblock_size = 32\nvocab_size = 256\n[sync]\ninner_steps = 1\nmin_sites = " << a.sites
      << "\nround_deadline_s = 600\nupload_encoding = \"" << a.encoding << "\"\n";
  write_file_atomic(dir / "coordinator.toml", cfg.str());
  fs::remove_all(dir / "run");
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string log = (dir / "coordinator.log").string();
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    ::dup2(1, 2);
    ::chdir(dir.c_str());
    ::execl(self.c_str(), self.c_str(), "coordinator", "--config", "coordinator.toml", "--run-dir", "run",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int port = 0;
  for (int i = 0; i < 1200 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::ifstream pf(dir / "run" / "port");
    pf >> port;
  }
  if (port == 0) throw UserError("the coordinator did not start: see " + (dir / "coordinator.log").string());

  // A pseudo-gradient of realistic magnitude, encoded once and shared by every site.
  std::vector<float> delta(n);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1e-4f);
  for (auto& v : delta) v = nd(rng);
  transport::CodecOptions o;
  o.encoding = transport::parse_encoding(a.encoding);
  const transport::Bytes payload = transport::encode(delta, manifest, o);

  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < a.sites; ++i) {
    transport::ClientOptions co;
    co.url = "wss://127.0.0.1:" + std::to_string(port) + "/v1/ws";
    co.tls = {dir / "certs/ca.crt", dir / "certs" / (ids[i] + ".crt"), dir / "certs" / (ids[i] + ".key")};
    co.connect_timeout = std::chrono::seconds(30);
    co.retry_deadline = std::chrono::seconds(120);
    threads.emplace_back(run_site, ids[i], i, a.sites, co, manifest.hash(), std::cref(payload), std::ref(failures));
  }
  uint64_t hwm = 0;
  int status = 0;
  for (;;) {
    hwm = std::max(hwm, vm_hwm_kb(pid));
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (auto& t : threads) t.join();

  // One memcpy of θ (4N bytes) in this process: the yardstick of the round tail.
  std::vector<float> src(n, 1.f), dst(n);
  std::memcpy(dst.data(), src.data(), n * 4);  // first touch
  double memcpy_s = 1e9;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(dst.data(), src.data(), n * 4);
    memcpy_s = std::min(memcpy_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> tails, durations, ckpts;
  std::ifstream mf(dir / "run" / "metrics.jsonl");
  for (std::string line; std::getline(mf, line);) {
    json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.value("event", "") == "round") {
      tails.push_back(j.value("tail_s", 0.0));
      durations.push_back(j.value("duration_s", 0.0));
      ckpts.push_back(j.value("checkpoint_wait_s", 0.0));
    }
  }
  auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double theta_mb = n * 4.0 / (1 << 20);
  json out = {{"sites", a.sites},
              {"parameters", n},
              {"encoding", a.encoding},
              {"spool_min_bytes", a.spool_min_bytes},
              {"rounds", tails.size()},
              {"coordinator_exit", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)},
              {"site_failures", failures.load()},
              {"coordinator_peak_rss_mb", hwm / 1024.0},
              {"theta_mb", theta_mb},
              {"rss_over_theta", hwm / 1024.0 / theta_mb},
              {"tail_s_median", median(tails)},
              {"memcpy_s", memcpy_s},
              {"tail_over_memcpy", median(tails) / memcpy_s},
              // The checkpoint is written in the background after the publish (round journal):
              // what a round's close waited for the previous one's write (normally 0).
              {"checkpoint_wait_s_median", median(ckpts)},
              {"round_s_median", median(durations)}};
  std::printf("%s\n", out.dump().c_str());
  if (a.dir.empty()) fs::remove_all(dir);
  return failures.load() == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

}  // namespace

void register_bench_coordinator(CLI::App& bench, CommandFn& run) {
  auto a = std::make_shared<LoadArgs>();
  auto* cmd = bench.add_subcommand("coordinator", "a coordinator process under load from K uploading sites");
  cmd->add_option("--sites", a->sites, "sites uploading at the same moment")->capture_default_str();
  cmd->add_option("--rounds", a->rounds, "rounds")->capture_default_str();
  cmd->add_option("--n-layer", a->n_layer, "model layers")->capture_default_str();
  cmd->add_option("--n-embd", a->n_embd, "model width (multiple of 4)")->capture_default_str();
  cmd->add_option("--encoding", a->encoding, "upload encoding")->capture_default_str();
  cmd->add_option("--spool-min-bytes", a->spool_min_bytes,
                  "coordinator.spool_min_bytes: uploads this large wait on disk until handled (2^40: never)")
      ->capture_default_str();
  cmd->add_option("--dir", a->dir, "work dir (kept); default a temp dir (removed)");
  cmd->callback([&run, a] { run = [a] { return run_load(*a); }; });
}

}  // namespace longhaul::app
