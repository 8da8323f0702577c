// SiteProcessGroup over c10d: TCPStore rendezvous + ProcessGroupGloo.
//
// The PyPI torch wheel ships c10d's headers but not Gloo's; ProcessGroupGloo.hpp needs them.
// Debian's libgloo-dev provides them (scripts/bootstrap installs it). The only Gloo types this
// file touches are behind shared_ptr/intrusive_ptr; the object sizes it allocates were checked
// against the wheel's libtorch_cpu (ProcessGroupGloo 488 bytes, Options 176 bytes, 2.11.0).
#if __has_include(<gloo/context.h>)
#define USE_C10D_GLOO 1
#define LONGHAUL_HAVE_GLOO 1
#endif

#include "inner/process_group.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <thread>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef LONGHAUL_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#include "common/log.h"

namespace longhaul::inner {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string to_string_bytes(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }
std::vector<uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::string ranks_text(const std::vector<int>& ranks) {
  std::ostringstream os;
  os << (ranks.size() == 1 ? "rank " : "ranks ");
  for (size_t i = 0; i < ranks.size(); ++i) os << (i ? ", " : "") << ranks[i];
  return os.str();
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

#ifdef LONGHAUL_HAVE_GLOO
class GlooSiteGroup final : public SiteProcessGroup {
 public:
  GlooSiteGroup(const ProcessGroupOptions& o) : o_(o) {
    where_ = o.host + ":" + std::to_string(o.port);
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.port);
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<size_t>(o.world_size);
    so.waitWorkers = false;  // we wait ourselves, to name who is missing
    so.timeout = o.timeout;
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(o.host, so);
    } catch (const std::exception& e) {
      if (o.rank == 0)
        throw UserError("site process group: rank 0 cannot host the rendezvous on " + where_ +
                        ": " + first_line(e.what()));
      throw RankError("site process group: rank 0 (rendezvous host " + where_ +
                      ") did not answer rank " + std::to_string(o.rank) + " within " +
                      std::to_string(o.timeout.count()) + " ms: " + first_line(e.what()));
    }
    rendezvous();
    auto opts = c10d::ProcessGroupGloo::Options::create_default(o.timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname, false));
    else if (is_loopback(o.host))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.host, false));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice(false));
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("lh/gloo", store_);
    try {
      backend_ = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, o.rank, o.world_size, opts);
    } catch (const std::exception& e) {
      failed_ = true;
      throw RankError("site process group: forming the Gloo group at " + where_ +
                      " failed: " + first_line(e.what()));
    }
    LH_LOG(Info, "site-pg") << "rank " << o.rank << " of " << o.world_size << " joined " << where_
                            << " (gloo)";
  }

  ~GlooSiteGroup() override {
    // Rank 0 hosts the store: keep it up until every rank has left (bounded), unless a peer
    // already failed.
    try {
      store_->add("lh/leaving", 1);
      if (o_.rank == 0 && !failed_) {
        const auto deadline = Clock::now() + std::min<milliseconds>(o_.timeout, milliseconds(10000));
        while (store_->add("lh/leaving", 0) < o_.world_size && Clock::now() < deadline)
          std::this_thread::sleep_for(milliseconds(10));
      }
    } catch (const std::exception&) {
    }
  }

  int rank() const override { return o_.rank; }
  int world_size() const override { return o_.world_size; }
  std::string backend_name() const override { return "gloo"; }
  torch::Device comm_device() const override { return torch::kCPU; }

  void all_reduce_sum(torch::Tensor& t) override {
    LH_CHECK(t.is_contiguous() && t.device().is_cpu(), "all_reduce_sum needs a contiguous CPU tensor");
    std::vector<at::Tensor> ts{t};
    collective("all_reduce", [&] { return backend_->allreduce(ts, c10d::AllreduceOptions{}); });
  }

  void broadcast(torch::Tensor& t, int root) override {
    LH_CHECK(t.is_contiguous() && t.device().is_cpu(), "broadcast needs a contiguous CPU tensor");
    LH_CHECK(root >= 0 && root < o_.world_size, "root = ", root);
    std::vector<at::Tensor> ts{t};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    collective("broadcast", [&] { return backend_->broadcast(ts, bo); });
  }

  std::vector<double> all_gather(double value) override {
    auto t = torch::zeros({o_.world_size}, torch::kFloat64);
    t[o_.rank] = value;  // sum of one value and zeros: exact
    all_reduce_sum(t);
    return {t.data_ptr<double>(), t.data_ptr<double>() + o_.world_size};
  }

  std::vector<int64_t> all_gather(int64_t value) override {
    auto t = torch::zeros({o_.world_size}, torch::kInt64);
    t[o_.rank] = value;
    all_reduce_sum(t);
    return {t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + o_.world_size};
  }

  void barrier() override {
    auto t = torch::zeros({1}, torch::kFloat32);
    all_reduce_sum(t);
  }

  void post(const std::string& key, const std::string& value) override {
    try {
      store_->set("lh/post/" + key, to_bytes(value));
    } catch (const std::exception& e) {
      throw store_gone(e);
    }
  }

  std::optional<std::string> poll(const std::string& key) override {
    try {
      if (!store_->check({"lh/post/" + key})) return std::nullopt;
      return to_string_bytes(store_->get("lh/post/" + key));
    } catch (const std::exception& e) {
      throw store_gone(e);
    }
  }

 private:
  RankError store_gone(const std::exception& e) {
    failed_ = true;
    return RankError("site process group: rank " + std::to_string(o_.rank) + ": rank 0 of " +
                     std::to_string(o_.world_size) + " (rendezvous host " + where_ +
                     ") is gone (dead or hung) [" + first_line(e.what()) + "]");
  }

  std::string key(const char* what, int r) const { return std::string("lh/") + what + "/" + std::to_string(r); }

  // Announce this rank, refuse duplicates, wait (bounded) for all others, name the missing.
  void rendezvous() {
    std::ostringstream me;
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    me << "pid " << getpid() << " on " << host << " world " << o_.world_size;
    const auto mine = to_bytes(me.str());
    const auto got = store_->compareSet(key("arrived", o_.rank), {}, mine);
    if (got != mine)
      throw UserError("site process group: rank " + std::to_string(o_.rank) +
                      " is already taken at " + where_ + " by " + to_string_bytes(got));
    const auto deadline = Clock::now() + o_.timeout;
    std::vector<int> missing;
    for (;;) {
      missing.clear();
      for (int r = 0; r < o_.world_size; ++r)
        if (!store_->check({key("arrived", r)})) missing.push_back(r);
      if (missing.empty() || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(milliseconds(20));
    }
    if (!missing.empty()) {
      failed_ = true;
      throw RankError("site process group: " + ranks_text(missing) + " of " +
                      std::to_string(o_.world_size) + " did not arrive at " + where_ + " within " +
                      std::to_string(o_.timeout.count()) + " ms (started? same --world-size?)");
    }
    const std::string suffix = " world " + std::to_string(o_.world_size);
    for (int r = 0; r < o_.world_size; ++r) {
      const auto info = to_string_bytes(store_->get(key("arrived", r)));
      if (info.size() < suffix.size() || info.compare(info.size() - suffix.size(), suffix.size(), suffix) != 0)
        throw UserError("site process group: rank " + std::to_string(r) + " (" + info +
                        ") disagrees on --world-size " + std::to_string(o_.world_size));
    }
  }

  // Numbers the collective, records this rank's progress in the store, runs it with the
  // timeout; on failure names the ranks that never reached it.
  template <typename Start>
  void collective(const char* name, Start&& start) {
    ++seq_;
    try {
      store_->set(key("progress", o_.rank), to_bytes(std::to_string(seq_)));
      auto work = start();
      if (!work->wait(o_.timeout)) throw std::runtime_error("timed out");
    } catch (const std::exception& e) {
      failed_ = true;
      throw RankError("site process group: rank " + std::to_string(o_.rank) + ": " + name + " #" +
                      std::to_string(seq_) + " failed: " + diagnose() + " [" + first_line(e.what()) + "]");
    }
  }

  std::string diagnose() {
    std::vector<std::string> behind;
    try {
      store_->setTimeout(std::min<milliseconds>(o_.timeout, milliseconds(2000)));
      for (int r = 0; r < o_.world_size; ++r) {
        if (r == o_.rank) continue;
        int64_t theirs = 0;
        if (store_->check({key("progress", r)}))
          theirs = std::stoll(to_string_bytes(store_->get(key("progress", r))));
        if (theirs < seq_)
          behind.push_back("rank " + std::to_string(r) + " of " + std::to_string(o_.world_size) +
                           " stopped after #" + std::to_string(theirs));
      }
    } catch (const std::exception&) {
      if (o_.rank != 0)
        return "rank 0 of " + std::to_string(o_.world_size) + " (rendezvous host " + where_ +
               ") is gone (dead or hung)";
    }
    if (behind.empty()) return "a peer failed during it (every rank had reached it)";
    std::string s;
    for (const auto& b : behind) s += (s.empty() ? "" : "; ") + b;
    return s + " (dead or hung)";
  }

  ProcessGroupOptions o_;
  std::string where_;
  c10::intrusive_ptr<c10d::TCPStore> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  int64_t seq_ = 0;
  bool failed_ = false;
};
#endif

}  // namespace

void parse_rendezvous(const std::string& spec, ProcessGroupOptions& options) {
  const auto colon = spec.rfind(':');
  auto bad = [&] {
    return UserError("--rendezvous '" + spec + "': expected HOST:PORT (e.g. 127.0.0.1:29500)");
  };
  if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) throw bad();
  std::string host = spec.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = spec.substr(colon + 1);
  if (host.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    throw bad();
  const int p = std::stoi(port);
  if (p < 1 || p > 65535) throw bad();
  options.host = host;
  options.port = p;
}

std::unique_ptr<SiteProcessGroup> SiteProcessGroup::connect(const ProcessGroupOptions& o, bool all_cuda) {
  if (o.world_size < 1 || o.world_size > 4096)
    throw UserError("--world-size " + std::to_string(o.world_size) + ": expected 1..4096");
  if (o.rank < 0 || o.rank >= o.world_size)
    throw UserError("--rank " + std::to_string(o.rank) + ": expected 0.." + std::to_string(o.world_size - 1));
  if (o.timeout.count() <= 0) throw UserError("process group timeout must be > 0 ms");
  if (o.backend != "auto" && o.backend != "gloo" && o.backend != "nccl")
    throw UserError("process group backend '" + o.backend + "': expected auto, gloo or nccl");
  if (o.backend == "nccl")
    throw UserError("process group backend 'nccl': this build has no NCCL process group; use "
                    "'gloo' (CUDA gradients are staged through host memory)");
  if (all_cuda && o.backend == "auto")
    LH_LOG(Info, "site-pg") << "all devices are CUDA, but this build joins ranks with Gloo "
                               "(host-staged all-reduce)";
#ifdef LONGHAUL_HAVE_GLOO
  return std::make_unique<GlooSiteGroup>(o);
#else
  throw UserError("this longhaul was built without Gloo headers (install libgloo-dev and rebuild): "
                  "multi-process sites are unavailable");
#endif
}

}  // namespace longhaul::inner
