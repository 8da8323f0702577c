#include "outer/cluster_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include <map>

#include "outer/test_dirs.h"
#include "transport/certs.h"

namespace longhaul::testing {

using json = nlohmann::json;

// ------------------------------------------------------------------------------- Process

Process::Process(std::vector<std::string> args, fs::path log) : log_(std::move(log)) {
  std::vector<std::string> argv = {LONGHAUL_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
}

Process::~Process() {
  if (pid_ > 0 && running()) {
    ::kill(pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
}

Process::Process(Process&& o) noexcept { *this = std::move(o); }
Process& Process::operator=(Process&& o) noexcept {
  std::swap(pid_, o.pid_);
  std::swap(status_, o.status_);
  std::swap(log_, o.log_);
  return *this;
}

bool Process::running() {
  if (pid_ <= 0 || status_ >= 0) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

void Process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

int Process::wait(std::chrono::seconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > until) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return status_;
}

// ------------------------------------------------------------------------------- Cluster

namespace {
void write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p);
  f << s;
}

// A small corpus with learnable structure: sentences from a fixed grammar.
std::string synthetic_corpus(size_t bytes) {
  const char* subj[] = {"the cat", "a dog", "my friend", "the old man", "our teacher", "a bird"};
  const char* verb[] = {"sees", "likes", "finds", "eats", "wants", "makes"};
  const char* obj[] = {"the ball", "a red apple", "some bread", "the moon", "a small box", "fish"};
  std::mt19937 rng(42);
  std::string s;
  while (s.size() < bytes) {
    s += subj[rng() % 6];
    s += ' ';
    s += verb[rng() % 6];
    s += ' ';
    s += obj[rng() % 6];
    s += ".\n";
  }
  return s;
}
}  // namespace

Cluster::Cluster(const std::string& name, ClusterOptions o) : opts_(std::move(o)) {
  root_ = fs::temp_directory_path() / ("lh_" + name + "_" + std::to_string(::getpid()));
  remove_tree(root_);
  fs::create_directories(root_ / "certs");
  fs::create_directories(root_ / "corpus");
  transport::create_ca(root_ / "ca");
  transport::issue_cert(root_ / "ca", "coordinator", {"localhost"}, {"127.0.0.1"}, 30, root_ / "certs");
  for (const auto& s : opts_.sites) transport::issue_cert(root_ / "ca", s, {}, {}, 30, root_ / "certs");
  write_text(root_ / "corpus" / "text.txt", synthetic_corpus(60000));

  std::ostringstream c;
  c << "[coordinator]\nrounds = " << opts_.rounds << "\nport = 0\nstart_sites = " << opts_.start_sites
    << "\nallowed_sites = [";
  for (size_t i = 0; i < opts_.sites.size(); ++i) c << (i ? ", " : "") << '"' << opts_.sites[i] << '"';
  c << "]\n[tls]\nca_cert = \"certs/ca.crt\"\ncert = \"certs/coordinator.crt\"\n"
    << "key = \"certs/coordinator.key\"\n"
    << "[model]\nn_layer = 1\nn_head = 2\nn_embd = 32\nblock_size = 32\nvocab_size = 256\n"
    << "[outer]\noptimizer = \"nesterov\"\nlr = 0.7\nmomentum = 0.9\n"
    << "[sync]\ninner_steps = " << opts_.inner_steps << "\nmin_sites = " << opts_.min_sites
    << "\nround_deadline_s = " << opts_.deadline_s << "\nupload_encoding = \""
    << opts_.upload_encoding << "\"\ndownload_encoding = \"" << opts_.download_encoding << "\"\n"
    << "[data]\npath = \"corpus\"\n[eval]\nevery_rounds = 1\nbatches = 2\nbatch_size = 8\n";
  write_text(coordinator_config(), c.str());
  for (size_t i = 0; i < opts_.sites.size(); ++i) {
    const auto& s = opts_.sites[i];
    std::ostringstream t;
    t << "[site]\nid = \"" << s << "\"\nreconnect_max_s = 1\nconnect_timeout_s = 10\n"
      << "[tls]\nca_cert = \"certs/ca.crt\"\ncert = \"certs/" << s << ".crt\"\nkey = \"certs/" << s
      << ".key\"\n[data]\npath = \"corpus\"\nnum_shards = " << opts_.sites.size()
      << "\nshard_index = " << i << "\n[optim]\nlr = 3e-3\nwarmup_steps = 2\n"
      << "[train]\nsteps = 200\nbatch_size = 4\nthreads = 1\nseed = " << 100 + i << "\n";
    write_text(root_ / (s + ".toml"), t.str());
  }
}

Cluster::~Cluster() {
  if (!::getenv("LONGHAUL_KEEP_TEST_DIRS")) {
    remove_tree(root_);
  }
}

Process Cluster::start_coordinator(int port, const std::string& log_suffix) {
  ::unlink((coordinator_dir() / "port").c_str());
  std::vector<std::string> args = {"coordinator", "--config", coordinator_config().string(), "--run-dir",
                                   coordinator_dir().string(), "--set", "coordinator.port=" + std::to_string(port)};
  for (const auto& kv : opts_.coordinator_overrides) {
    args.push_back("--set");
    args.push_back(kv);
  }
  Process p(args, root_ / ("coordinator" + log_suffix + ".log"));
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < until && p.running()) {
    std::ifstream f(coordinator_dir() / "port");
    int v = 0;
    if (f >> v && v > 0) {
      port_ = v;
      return p;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return p;
}

std::vector<Process> Cluster::start_sites() {
  std::vector<Process> out;
  for (const auto& s : opts_.sites) out.push_back(start_site(s));
  return out;
}

Process Cluster::start_site(const std::string& s, const std::string& log_suffix) {
  return start_site(s, log_suffix, {});
}

Process Cluster::start_site(const std::string& s, const std::string& log_suffix,
                            const std::vector<std::string>& extra_args) {
  std::vector<std::string> args = {"site", "--config", (root_ / (s + ".toml")).string(), "--run-dir",
                                   site_dir(s).string(), "--set",
                                   "site.coordinator=wss://127.0.0.1:" + std::to_string(port_) + "/v1/ws"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  return Process(args, root_ / (s + log_suffix + ".log"));
}

std::vector<json> Cluster::read_events(const fs::path& p, const std::string& event) {
  std::vector<json> out;
  std::ifstream f(p);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    try {
      json j = json::parse(line);
      if (j.value("event", std::string()) == event) out.push_back(j);
    } catch (...) {
      // a line being written while we read
    }
  }
  return out;
}

std::vector<json> Cluster::coordinator_rounds() const {
  return read_events(coordinator_dir() / "metrics.jsonl", "round");
}
std::vector<json> Cluster::site_rounds(const std::string& s) const {
  return read_events(site_dir(s) / "metrics.jsonl", "round");
}

bool Cluster::edit_coordinator_config(const std::string& from, const std::string& to) const {
  std::ifstream in(coordinator_config());
  std::string t((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto at = t.find(from);
  if (at == std::string::npos) return false;
  t.replace(at, from.size(), to);
  std::ofstream(coordinator_config()) << t;
  return true;
}

bool Cluster::wait_for_rounds(size_t n, std::chrono::seconds timeout) const {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (coordinator_rounds().size() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::string Cluster::tail(const fs::path& log, size_t bytes) {
  std::ifstream f(log);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

bool Cluster::wait_until_training(const Process& site, std::chrono::seconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    const std::string t = tail(site.log(), 100000);
    const auto tr = t.rfind(": training "), up = t.rfind("uploading");
    if (tr != std::string::npos && (up == std::string::npos || up < tr)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

bool Cluster::restart_site_holding_the_others(std::map<std::string, Process>& sites, const std::string& site,
                                              const std::string& suffix, std::chrono::seconds timeout) {
  for (auto& [s, p] : sites)
    if (s != site) p.signal(SIGSTOP);
  sites[site] = start_site(site, suffix);
  const bool trains = wait_until_training(sites[site], timeout);
  for (auto& [s, p] : sites)
    if (s != site) p.signal(SIGCONT);
  return trains;
}

// Every site's θ hash after round r equals the coordinator's published hash for round r.
void expect_hashes_agree(const Cluster& c, const std::vector<std::string>& sites, bool every_round) {
  std::map<int64_t, std::string> coord;
  for (const auto& r : c.coordinator_rounds()) coord[r["round"]] = r["param_hash"];
  for (const auto& s : sites) {
    auto rounds = c.site_rounds(s);
    if (every_round) {
      EXPECT_EQ(rounds.size(), coord.size()) << s;
    }
    for (const auto& r : rounds) {
      int64_t k = r["round"];
      ASSERT_TRUE(coord.count(k)) << s << " round " << k;
      EXPECT_EQ(r["param_hash"], coord[k]) << s << " round " << k;
      EXPECT_EQ(r["hash_mismatches"], 0) << s;
    }
  }
}

}  // namespace longhaul::testing
