#include "outer/run_history.h"

#include <fstream>

namespace longhaul::outer {

using json = nlohmann::json;

json sync_policy_json(const SyncPolicy& p) {
  return {{"inner_steps", p.inner_steps},
          {"min_sites", p.min_sites},
          {"round_deadline_s", p.round_deadline_s},
          {"upload_encoding", p.upload_encoding},
          {"download_encoding", p.download_encoding},
          {"zstd_level", p.zstd_level},
          {"balance", p.balance},
          {"auto_inner_steps", p.auto_inner_steps}};
}

double unix_now_s() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

namespace {
// Cuts s to at most n bytes without splitting a UTF-8 sequence; appends "…" when cut.
std::string cut_utf8(std::string_view s, size_t n) {
  if (s.size() <= n) return std::string(s);
  size_t end = n;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return std::string(s.substr(0, end)) + "\xE2\x80\xA6";
}
}  // namespace

RunHistory::RunHistory(Limits limits) : limits_(limits) {}

void RunHistory::set_run(const std::string& run_id, double started_unix_s) {
  std::lock_guard<std::mutex> l(mu_);
  run_id_ = run_id;
  started_ = started_unix_s;
}

void RunHistory::add_round(const json& line) {
  if (!line.is_object() || !line.contains("round") || !line["round"].is_number_integer()) return;
  std::lock_guard<std::mutex> l(mu_);
  // A round seen again (a restart that re-ran it after refilling) replaces the older line.
  const int64_t r = line["round"].get<int64_t>();
  while (!rounds_.empty() && rounds_.back()["round"].get<int64_t>() >= r) rounds_.pop_back();
  rounds_.push_back(line);
  while (rounds_.size() > limits_.max_rounds) {
    rounds_.pop_front();
    ++rounds_dropped_;
  }
}

int64_t RunHistory::last_round() const {
  std::lock_guard<std::mutex> l(mu_);
  return rounds_.empty() ? -1 : rounds_.back()["round"].get<int64_t>();
}

void RunHistory::note_policy(int64_t round, const json& policy) {
  std::lock_guard<std::mutex> l(mu_);
  if (policy == policy_) return;
  json changes = json::object();
  if (policy_.is_object())
    for (auto& [k, v] : policy.items())
      if (!policy_.contains(k) || policy_[k] != v) changes[k] = json::array({policy_.value(k, json()), v});
  policy_changes_.push_back({{"round", round}, {"time", unix_now_s()}, {"policy", policy},
                             {"changes", changes}});
  while (policy_changes_.size() > limits_.max_policy_changes) policy_changes_.pop_front();
  policy_ = policy;
}

void RunHistory::add_warning(std::string_view level, std::string_view tag, std::string_view message) {
  json w = {{"time", unix_now_s()},
            {"level", std::string(level)},
            {"tag", cut_utf8(tag, 64)},
            {"message", cut_utf8(message, limits_.max_warning_chars)}};
  std::lock_guard<std::mutex> l(mu_);
  warnings_.push_back(std::move(w));
  ++warnings_total_;
  while (warnings_.size() > limits_.max_warnings) warnings_.pop_front();
}

size_t RunHistory::load_jsonl(const std::filesystem::path& metrics_jsonl) {
  std::ifstream in(metrics_jsonl);
  std::string text;
  size_t loaded = 0;
  while (std::getline(in, text)) {
    if (text.empty()) continue;
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) {
      std::lock_guard<std::mutex> l(mu_);
      ++skipped_lines_;
      continue;
    }
    const std::string ev = j.value("event", std::string());
    if (ev == "init" && j.contains("time") && j["time"].is_number()) {
      std::lock_guard<std::mutex> l(mu_);
      started_ = j["time"].get<double>();
    } else if (ev == "round" && j.contains("round") && j["round"].is_number_integer()) {
      add_round(j);
      ++loaded;
    }
  }
  return loaded;
}

json RunHistory::to_json(int64_t since_round) const {
  std::lock_guard<std::mutex> l(mu_);
  json rounds = json::array();
  for (const auto& r : rounds_)
    if (r["round"].get<int64_t>() > since_round) rounds.push_back(r);
  return {{"run_id", run_id_},
          {"started", started_},
          {"now", unix_now_s()},
          {"rounds", std::move(rounds)},
          {"rounds_dropped", rounds_dropped_},
          {"policy", policy_},
          {"policy_changes", json(policy_changes_)},
          {"warnings", json(warnings_)},
          {"warnings_total", warnings_total_},
          {"skipped_lines", skipped_lines_}};
}

size_t RunHistory::rounds() const {
  std::lock_guard<std::mutex> l(mu_);
  return rounds_.size();
}

}  // namespace longhaul::outer
