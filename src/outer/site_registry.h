// The coordinator's books on every site it has heard of: its connection, join state, what it
// declared at join, counters (checkpointed, so they survive a restart), the reason of its last
// refusal, and the per-site budget of requests that cost a full θ (welcome on hello/resync).
// No I/O and no torch: the coordinator sends, this only keeps the books.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "outer/message_schema.h"
#include "transport/connection.h"

namespace longhaul::outer {

using SteadyClock = std::chrono::steady_clock;

struct SiteEntry {
  std::shared_ptr<transport::Connection> conn;  // null when disconnected
  bool welcomed = false;       // hello accepted on the current connection
  bool told_complete = false;  // run_complete sent: the site exits 0
  std::string state = "disconnected";  // disconnected | joined | training | uploaded
  std::optional<protocol::SiteDeclaration> decl;  // from its last hello
  std::string address;         // peer address of the current/last connection
  SteadyClock::time_point last_seen{};
  int64_t last_round_uploaded = -1;
  uint64_t bytes_up = 0, bytes_down = 0;  // payload bytes
  int64_t uploads_accepted = 0, uploads_rejected = 0, resyncs = 0, protocol_errors = 0;
  int64_t full_theta_refused = 0;  // welcome requests over the rate limit
  std::string last_refusal;        // why the last upload or message was refused
  std::deque<SteadyClock::time_point> full_theta_sends;  // within the rate-limit window
  nlohmann::json report = nlohmann::json::object();       // the site's last per-round report

  // Status and checkpoint view (counters, state, declaration, last report).
  nlohmann::json to_json() const;
};

class SiteRegistry {
 public:
  // max_full_theta: welcomes (full θ) per site within `window`; beyond it a request is refused.
  SiteRegistry(int max_full_theta, std::chrono::seconds window);

  SiteEntry& at(const std::string& id) { return sites_[id]; }  // creates
  SiteEntry* find(const std::string& id);
  // The site whose current connection is c ("" when none). O(log K): every event asks.
  std::string id_of(const std::shared_ptr<transport::Connection>& c) const;
  // Makes c the current connection of `id` (a previous one is forgotten, not closed).
  void attach(const std::string& id, std::shared_ptr<transport::Connection> c);
  // Forgets every connection (shutdown: they must not outlive the server).
  void detach_all();
  std::set<std::string> welcomed() const;
  int welcomed_count() const;
  // Records a full-θ send for `id` and says whether it is within the budget.
  bool take_full_theta(const std::string& id, SteadyClock::time_point now);
  // Marks `id` disconnected (connection dropped or revoked).
  void disconnect(const std::string& id);

  std::map<std::string, SiteEntry>::iterator begin() { return sites_.begin(); }
  std::map<std::string, SiteEntry>::iterator end() { return sites_.end(); }
  std::map<std::string, SiteEntry>::const_iterator begin() const { return sites_.begin(); }
  std::map<std::string, SiteEntry>::const_iterator end() const { return sites_.end(); }

  // Counters of every site, for the checkpoint; restore() reads them back (unknown fields and
  // wrong types are ignored: the checkpoint is ours, but old versions lack newer fields).
  nlohmann::json counters_json() const;
  void restore(const nlohmann::json& counters);

 private:
  int max_full_theta_;
  std::chrono::seconds window_;
  std::map<std::string, SiteEntry> sites_;
  std::map<const transport::Connection*, std::string> by_conn_;  // current connections only
};

}  // namespace longhaul::outer
