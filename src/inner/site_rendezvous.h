// The rendezvous of a multi-process site: a c10d TCPStore hosted by rank 0 that every rank
// joins before any collective backend (Gloo, NCCL) is formed, and that stays beside it as the
// site's control channel and as the record of each rank's progress.
//
// Contract: the constructor returns only once all world_size ranks have announced themselves
// with the same world size (else RankError naming the missing ranks within `timeout`, or
// UserError for a taken rank / a world-size mismatch). Every later call waits at most
// `timeout`; when rank 0 (the store) is gone they throw RankError naming it.
// Keys live under "lh/": arrived/<r>, x/<name>/<r> (exchange), post/<key>, progress/<r>,
// leaving; backends get their own prefix through backend_store().
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "inner/process_group.h"

namespace longhaul::inner {

class SiteRendezvous {
 public:
  explicit SiteRendezvous(const ProcessGroupOptions& options);
  // Leaves the group: rank 0 keeps the store up until every rank has left (at most
  // min(timeout, 10 s)), unless a peer already failed.
  ~SiteRendezvous();
  SiteRendezvous(const SiteRendezvous&) = delete;
  SiteRendezvous& operator=(const SiteRendezvous&) = delete;

  const ProcessGroupOptions& options() const { return o_; }
  // "HOST:PORT", for messages.
  const std::string& where() const { return where_; }
  // The store under "lh/<name>/", for a c10d backend's own keys.
  c10::intrusive_ptr<c10d::Store> backend_store(const std::string& name);

  // Every rank's `value` under `name`, in rank order: posts this rank's, waits for the rest.
  std::vector<std::string> exchange(const std::string& name, const std::string& value);
  // The control channel of SiteProcessGroup::post/poll.
  void post(const std::string& key, const std::string& value);
  std::optional<std::string> poll(const std::string& key);

  // Collective #seq is about to start on this rank.
  void record_progress(int64_t seq);
  // Why collective #seq failed, from the ranks' recorded progress: "rank 1 of 2 stopped after
  // #11 (dead or hung)", or that rank 0 (the store) is gone.
  std::string diagnose(int64_t seq);
  // A peer failed: the destructor does not wait for the others to leave.
  void mark_failed() { failed_ = true; }

 private:
  std::string key(const char* what, int rank) const;
  RankError store_gone(const std::exception& e);
  void announce_and_wait();

  ProcessGroupOptions o_;
  std::string where_;
  c10::intrusive_ptr<c10d::Store> store_;  // the TCPStore (server on rank 0)
  bool failed_ = false;
};

}  // namespace longhaul::inner
