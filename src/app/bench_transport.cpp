// `longhaul bench transport [--bytes N] [--connections C]`: payloads through the real channel
// (TLS 1.3 WebSocket, mutual auth) on loopback, against the ceiling measured in the same run:
// the single-core AES-128-GCM encryption rate of the linked OpenSSL (EVP, 16 KiB records).
// Prints one JSON object. GB/s = 1e9 bytes/s of payload, sender's send() to receiver's
// on_message (payload fully received and checksummed).
#include <ftw.h>
#include <sched.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "app/commands.h"
#include "common/error.h"
#include "common/log.h"
#include "transport/certs.h"
#include "transport/channel_client.h"
#include "transport/channel_server.h"

namespace longhaul::app {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace longhaul::transport;

namespace {

// Single-core AES-128-GCM encryption rate in GB/s, TLS-record-sized (16 KiB) calls.
double aes_gcm_gbps(double seconds) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr);
  unsigned char key[16] = {1}, iv[12] = {2}, tag[16];
  std::vector<unsigned char> in(16384, 7), out(16384 + 32);
  uint64_t bytes = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int i = 0; i < 64; ++i) {
      int n = 0;
      EVP_EncryptInit_ex2(ctx, cipher, key, iv, nullptr);
      EVP_EncryptUpdate(ctx, out.data(), &n, in.data(), static_cast<int>(in.size()));
      EVP_EncryptFinal_ex(ctx, out.data() + n, &n);
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag);
      bytes += in.size();
    }
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  EVP_CIPHER_free(cipher);
  EVP_CIPHER_CTX_free(ctx);
  return bytes / elapsed / 1e9;
}

// rm -rf through nftw: std::filesystem::remove_all resolves to a copy inside libtorch.so
// that crashes when called from this binary.
void remove_tree(const fs::path& dir) {
  ::nftw(dir.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
}

struct Pki {
  fs::path dir;
  TlsFiles server, client;
};

Pki make_pki() {
  Pki p;
  p.dir = fs::temp_directory_path() / ("longhaul-bench-" + std::to_string(::getpid()));
  remove_tree(p.dir);
  create_ca(p.dir / "ca", 1);
  auto s = issue_cert(p.dir / "ca", "coordinator", {}, {"127.0.0.1"}, 1, p.dir / "coordinator");
  auto c = issue_cert(p.dir / "ca", "bench-site", {}, {}, 1, p.dir / "site");
  p.server = {s.ca_cert, s.cert, s.key};
  p.client = {c.ca_cert, c.cert, c.key};
  return p;
}

// CPU seconds (user + system) each thread of this process has used so far, by thread id.
std::map<int, double> thread_cpu_seconds() {
  std::map<int, double> out;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  for (const auto& e : fs::directory_iterator("/proc/self/task")) {
    std::ifstream f(e.path() / "stat");
    std::string line;
    std::getline(f, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    double ut = 0, st = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14, 15: utime, stime (ticks)
      if (i == 14) ut = std::stod(field);
      if (i == 15) st = std::stod(field);
    }
    out[std::stoi(e.path().filename().string())] = (ut + st) / tick;
  }
  return out;
}

// CPUs this process may run on (e.g. fewer under `taskset -c 0`): the scaling runs compare these.
int cores_allowed() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return static_cast<int>(std::thread::hardware_concurrency());
  return CPU_COUNT(&set);
}

struct Transfer {
  double gbps = 0;
  double busiest_thread_cpu_share = 0;  // CPU time of the busiest thread / wall time
  double cpu_seconds_per_gb = 0;        // all threads, per 1e9 payload bytes
};

// `connections` clients each send one payload of `bytes` at once; returns aggregate GB/s.
Transfer run_transfer(const Pki& pki, uint64_t bytes, int connections) {
  ServerOptions so;
  so.tls = pki.server;
  so.max_message_bytes = bytes + (1 << 20);
  so.threads = connections;
  std::mutex mu;
  std::condition_variable cv;
  int received = 0;
  ChannelServer server(so);
  server.on_message([&](std::shared_ptr<Connection>, Message m) {
    if (m.payload.size() != bytes) throw InvariantError("bench: payload size mismatch");
    std::lock_guard lock(mu);
    ++received;
    cv.notify_all();
  });
  server.start();
  std::vector<std::unique_ptr<ChannelClient>> clients;
  std::vector<Message> msgs;
  for (int i = 0; i < connections; ++i) {
    ClientOptions co;
    co.url = "wss://127.0.0.1:" + std::to_string(server.port()) + "/v1/ws";
    co.tls = pki.client;
    co.retry_deadline = std::chrono::seconds(10);
    clients.push_back(std::make_unique<ChannelClient>(co));
    clients.back()->connect();
    Message m{"bench", nlohmann::json::object(), Bytes(bytes)};
    for (uint64_t j = 0; j < bytes; j += 4096) m.payload[j] = static_cast<std::byte>(j >> 12);  // touch pages
    msgs.push_back(std::move(m));
  }
  const auto cpu0 = thread_cpu_seconds();
  const auto t0 = Clock::now();
  for (int i = 0; i < connections; ++i) clients[i]->send(std::move(msgs[i]));
  {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, std::chrono::minutes(5), [&] { return received == connections; }))
      throw std::runtime_error("bench: transfer did not finish in 5 minutes");
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto cpu1 = thread_cpu_seconds();
  for (auto& c : clients) c->close();
  clients.clear();
  server.stop();
  Transfer t;
  t.gbps = double(bytes) * connections / s / 1e9;
  double total = 0, busiest = 0;
  for (const auto& [tid, c1] : cpu1) {
    const auto it = cpu0.find(tid);
    const double used = c1 - (it == cpu0.end() ? 0.0 : it->second);
    total += used;
    busiest = std::max(busiest, used);
  }
  t.busiest_thread_cpu_share = busiest / s;
  t.cpu_seconds_per_gb = total / (double(bytes) * connections / 1e9);
  return t;
}

}  // namespace

void register_bench_transport(CLI::App& app, CommandFn& run) {
  static uint64_t bytes = 256ull << 20;
  static int max_connections = 0;
  static int repeats = 3;
  auto* cmd = app.add_subcommand("transport", "TLS WebSocket throughput on loopback vs the AES-128-GCM ceiling");
  cmd->add_option("--bytes", bytes, "payload bytes per connection")->capture_default_str();
  cmd->add_option("--connections", max_connections,
                  "largest parallel-connection count to try (1, 2, 4, .. up to it; default: hardware threads)");
  cmd->add_option("--repeats", repeats, "runs per point; the best is reported")->capture_default_str();
  cmd->callback([&run] {
    run = [] {
      if (bytes < 1024) throw UserError("--bytes must be >= 1024");
      const int maxc = max_connections > 0 ? max_connections : std::max(1, cores_allowed());
      set_log_level(LogLevel::kWarn);
      const Pki pki = make_pki();
      const double aes = aes_gcm_gbps(1.0);
      nlohmann::json scaling = nlohmann::json::array();
      double single = 0;
      for (int c = 1; c <= maxc; c *= 2) {
        Transfer best, first;
        for (int r = 0; r < repeats; ++r) {
          const Transfer t = run_transfer(pki, bytes, c);
          if (r == 0) first = t;
          if (t.gbps > best.gbps) best = t;
        }
        if (c == 1) single = best.gbps;
        scaling.push_back({{"connections", c},
                           {"gbps", best.gbps},
                           {"first_run_gbps", first.gbps},
                           {"speedup", best.gbps / single},
                           {"cpu_seconds_per_gb", best.cpu_seconds_per_gb},
                           {"busiest_thread_cpu_share", best.busiest_thread_cpu_share}});
      }
      remove_tree(pki.dir);
      nlohmann::json out = {{"bench", "transport"},
                            {"bytes", bytes},
                            {"tls", "TLS 1.3 " + std::string("AES-128-GCM ceiling from EVP")},
                            {"gbps", single},
                            {"aes128gcm_gbps_single_core", aes},
                            {"ratio_to_aes_gcm", single / aes},
                            {"hardware_threads", std::thread::hardware_concurrency()},
                            {"cores_allowed", cores_allowed()},
                            {"scaling", scaling}};
      std::cout << out.dump() << std::endl;
      return 0;
    };
  });
}

}  // namespace longhaul::app
