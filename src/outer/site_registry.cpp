#include "outer/site_registry.h"

namespace longhaul::outer {

using json = nlohmann::json;

json SiteEntry::to_json() const {
  json j = {{"state", state},
            {"last_round_uploaded", last_round_uploaded},
            {"bytes_up", bytes_up},
            {"bytes_down", bytes_down},
            {"uploads_accepted", uploads_accepted},
            {"uploads_rejected", uploads_rejected},
            {"resyncs", resyncs},
            {"protocol_errors", protocol_errors},
            {"full_theta_refused", full_theta_refused},
            {"last_refusal", last_refusal}};
  if (decl) j["declared"] = decl->to_json();
  if (!address.empty()) j["address"] = address;
  if (last_seen != SteadyClock::time_point{})
    j["last_seen_s_ago"] =
        std::chrono::duration<double>(SteadyClock::now() - last_seen).count();
  for (const auto& [k, v] : report.items()) j[k] = v;
  return j;
}

SiteRegistry::SiteRegistry(int max_full_theta, std::chrono::seconds window)
    : max_full_theta_(max_full_theta), window_(window) {}

SiteEntry* SiteRegistry::find(const std::string& id) {
  auto it = sites_.find(id);
  return it == sites_.end() ? nullptr : &it->second;
}

std::string SiteRegistry::id_of(const std::shared_ptr<transport::Connection>& c) const {
  if (!c) return {};
  auto it = by_conn_.find(c.get());
  return it == by_conn_.end() ? std::string() : it->second;
}

void SiteRegistry::attach(const std::string& id, std::shared_ptr<transport::Connection> c) {
  SiteEntry& s = sites_[id];
  if (s.conn) by_conn_.erase(s.conn.get());
  if (c) by_conn_[c.get()] = id;
  s.conn = std::move(c);
}

void SiteRegistry::detach_all() {
  for (auto& [id, s] : sites_) s.conn.reset();
  by_conn_.clear();
}

std::set<std::string> SiteRegistry::welcomed() const {
  std::set<std::string> out;
  for (const auto& [id, s] : sites_)
    if (s.welcomed) out.insert(id);
  return out;
}

int SiteRegistry::welcomed_count() const {
  int n = 0;
  for (const auto& [id, s] : sites_) n += s.welcomed;
  return n;
}

bool SiteRegistry::take_full_theta(const std::string& id, SteadyClock::time_point now) {
  SiteEntry& s = sites_[id];
  while (!s.full_theta_sends.empty() && now - s.full_theta_sends.front() > window_)
    s.full_theta_sends.pop_front();
  if (static_cast<int>(s.full_theta_sends.size()) >= max_full_theta_) {
    ++s.full_theta_refused;
    return false;
  }
  s.full_theta_sends.push_back(now);
  return true;
}

void SiteRegistry::disconnect(const std::string& id) {
  auto* s = find(id);
  if (!s) return;
  if (s->conn) by_conn_.erase(s->conn.get());
  s->conn.reset();
  s->welcomed = false;
  s->state = "disconnected";
}

json SiteRegistry::counters_json() const {
  json out = json::object();
  for (const auto& [id, s] : sites_)
    out[id] = {{"last_round_uploaded", s.last_round_uploaded},
               {"bytes_up", s.bytes_up},
               {"bytes_down", s.bytes_down},
               {"uploads_accepted", s.uploads_accepted},
               {"uploads_rejected", s.uploads_rejected},
               {"resyncs", s.resyncs},
               {"protocol_errors", s.protocol_errors}};
  return out;
}

void SiteRegistry::restore(const json& counters) {
  if (!counters.is_object()) return;
  auto get = [](const json& o, const char* k, auto dflt) {
    auto it = o.find(k);
    if (it == o.end() || !it->is_number_integer()) return dflt;
    return it->template get<decltype(dflt)>();
  };
  for (const auto& [id, c] : counters.items()) {
    if (!c.is_object()) continue;
    SiteEntry& s = sites_[id];
    s.last_round_uploaded = get(c, "last_round_uploaded", int64_t{-1});
    s.bytes_up = get(c, "bytes_up", uint64_t{0});
    s.bytes_down = get(c, "bytes_down", uint64_t{0});
    s.uploads_accepted = get(c, "uploads_accepted", int64_t{0});
    s.uploads_rejected = get(c, "uploads_rejected", int64_t{0});
    s.resyncs = get(c, "resyncs", int64_t{0});
    s.protocol_errors = get(c, "protocol_errors", int64_t{0});
  }
}

}  // namespace longhaul::outer
