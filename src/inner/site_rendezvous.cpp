#include "inner/site_rendezvous.h"

#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

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

}  // namespace

SiteRendezvous::SiteRendezvous(const ProcessGroupOptions& o) : o_(o) {
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
      throw UserError("site process group: rank 0 cannot host the rendezvous on " + where_ + ": " +
                      first_line(e.what()));
    throw RankError("site process group: rank 0 (rendezvous host " + where_ +
                    ") did not answer rank " + std::to_string(o.rank) + " within " +
                    std::to_string(o.timeout.count()) + " ms: " + first_line(e.what()));
  }
  announce_and_wait();
}

SiteRendezvous::~SiteRendezvous() {
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

c10::intrusive_ptr<c10d::Store> SiteRendezvous::backend_store(const std::string& name) {
  return c10::make_intrusive<c10d::PrefixStore>("lh/" + name, store_);
}

std::string SiteRendezvous::key(const char* what, int r) const {
  return std::string("lh/") + what + "/" + std::to_string(r);
}

RankError SiteRendezvous::store_gone(const std::exception& e) {
  failed_ = true;
  return RankError("site process group: rank " + std::to_string(o_.rank) + ": rank 0 of " +
                   std::to_string(o_.world_size) + " (rendezvous host " + where_ +
                   ") is gone (dead or hung) [" + first_line(e.what()) + "]");
}

void SiteRendezvous::announce_and_wait() {
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
    if (info.size() < suffix.size() ||
        info.compare(info.size() - suffix.size(), suffix.size(), suffix) != 0)
      throw UserError("site process group: rank " + std::to_string(r) + " (" + info +
                      ") disagrees on --world-size " + std::to_string(o_.world_size));
  }
}

std::vector<std::string> SiteRendezvous::exchange(const std::string& name,
                                                  const std::string& value) {
  const std::string prefix = "x/" + name;
  std::vector<std::string> out(static_cast<size_t>(o_.world_size));
  try {
    store_->set(key(prefix.c_str(), o_.rank), to_bytes(value));
    const auto deadline = Clock::now() + o_.timeout;
    std::vector<int> missing;
    for (;;) {
      missing.clear();
      for (int r = 0; r < o_.world_size; ++r)
        if (!store_->check({key(prefix.c_str(), r)})) missing.push_back(r);
      if (missing.empty() || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(milliseconds(10));
    }
    if (!missing.empty()) {
      failed_ = true;
      throw RankError("site process group: " + ranks_text(missing) + " of " +
                      std::to_string(o_.world_size) + " did not post '" + name + "' within " +
                      std::to_string(o_.timeout.count()) + " ms (dead or hung)");
    }
    for (int r = 0; r < o_.world_size; ++r)
      out[static_cast<size_t>(r)] = to_string_bytes(store_->get(key(prefix.c_str(), r)));
  } catch (const RankError&) {
    throw;
  } catch (const std::exception& e) {
    throw store_gone(e);
  }
  return out;
}

void SiteRendezvous::post(const std::string& k, const std::string& value) {
  try {
    store_->set("lh/post/" + k, to_bytes(value));
  } catch (const std::exception& e) {
    throw store_gone(e);
  }
}

std::optional<std::string> SiteRendezvous::poll(const std::string& k) {
  try {
    if (!store_->check({"lh/post/" + k})) return std::nullopt;
    return to_string_bytes(store_->get("lh/post/" + k));
  } catch (const std::exception& e) {
    throw store_gone(e);
  }
}

void SiteRendezvous::record_progress(int64_t seq) {
  store_->set(key("progress", o_.rank), to_bytes(std::to_string(seq)));
}

std::string SiteRendezvous::diagnose(int64_t seq) {
  failed_ = true;
  std::vector<std::string> behind;
  try {
    store_->setTimeout(std::min<milliseconds>(o_.timeout, milliseconds(2000)));
    for (int r = 0; r < o_.world_size; ++r) {
      if (r == o_.rank) continue;
      int64_t theirs = 0;
      if (store_->check({key("progress", r)}))
        theirs = std::stoll(to_string_bytes(store_->get(key("progress", r))));
      if (theirs < seq)
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

}  // namespace longhaul::inner
