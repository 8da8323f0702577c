#include "outer/coordinator_config.h"

#include <toml++/toml.h>

#include <boost/asio/ip/address.hpp>
#include <cstdlib>
#include <map>
#include <sstream>

#include "common/error.h"
#include "inner/train_config.h"
#include "outer/fragment_schedule.h"
#include "transport/codec.h"

namespace longhaul::outer {

namespace {
const std::vector<std::string> kEncodings = {"fp32", "bf16", "fp16", "int8", "int4"};

// "127.0.0.1:8080" / "[::1]:8080" -> (address, port); a loopback IP literal is required.
void parse_dashboard_bind(ConfigReader& r, CoordinatorConfig& c) {
  const std::string& v = c.dashboard_bind;
  const auto colon = v.rfind(':');
  std::string host = colon == std::string::npos ? "" : v.substr(0, colon);
  const std::string port = colon == std::string::npos ? "" : v.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  const auto addr = boost::asio::ip::make_address(host, ec);
  char* end = nullptr;
  const long p = port.empty() ? -1 : std::strtol(port.c_str(), &end, 10);
  if (ec || p < 0 || p > 65535 || (end && *end != '\0'))
    r.fail("coordinator.dashboard_bind", "\"IP:PORT\" with a loopback IP, e.g. \"127.0.0.1:8080\" (or \"\" for off)");
  if (!addr.is_loopback())
    r.fail("coordinator.dashboard_bind",
           "a loopback address (127.0.0.1 or [::1]): the plain-HTTP listener has no authentication; reach it "
           "from elsewhere through an SSH tunnel, or use the TLS port with an operator certificate");
  c.dashboard_address = addr.to_string();
  c.dashboard_port = p;
}
}  // namespace

namespace {
// Streaming DiLoCo needs one fixed schedule that every site follows in lockstep (issue #11).
void check_streaming(ConfigReader& r, const StreamingConfig& s, const SyncPolicy& p, const inner::GptConfig& m) {
  if (s.fragments > 1 && s.fragments > m.n_layer)
    r.fail("sync.fragments", "at most model.n_layer = " + std::to_string(m.n_layer) +
                                 " (fragments are strided over whole transformer blocks)");
  if (!s.streaming()) return;
  const char* key = s.fragments > 1 ? "sync.fragments" : "sync.overlap_steps";
  if (p.auto_inner_steps)
    r.fail(key, "sync.inner_steps = \"auto\" to be off: fragments and overlap follow a fixed schedule of H steps");
  if (p.balance != "equal_steps")
    r.fail(key, "sync.balance = \"equal_steps\": every site runs the same fragment schedule");
  if (s.fragments > p.inner_steps)
    r.fail("sync.fragments", "at most sync.inner_steps = " + std::to_string(p.inner_steps) +
                                 " (each fragment synchronizes at its own step offset within H)");
  const int64_t gap = FragmentSchedule(s.fragments, p.inner_steps).min_gap();
  if (s.overlap_steps >= gap)
    r.fail("sync.overlap_steps", "less than " + std::to_string(gap) +
                                     ", the fewest inner steps between two fragment exchanges (sync.inner_steps " +
                                     std::to_string(p.inner_steps) + " / sync.fragments " +
                                     std::to_string(s.fragments) + "): at most one fragment may be in flight");
}
}  // namespace

SyncPolicy read_sync_policy(ConfigReader& r) {
  SyncPolicy p;
  if (r.has("sync.inner_steps") && r.raw("sync.inner_steps")->is_string()) {
    r.get_enum("sync.inner_steps", "auto", {"auto"});
    p.auto_inner_steps = true;
  } else {
    p.inner_steps = r.get_int("sync.inner_steps", p.inner_steps, 1, 1000000);
  }
  p.target_comm_fraction = r.get_double("sync.target_comm_fraction", p.target_comm_fraction, 1e-4, 0.9);
  p.max_inner_steps = r.get_int("sync.max_inner_steps", p.max_inner_steps, 1, 1000000);
  p.straggler_margin = r.get_double("sync.straggler_margin", p.straggler_margin, 0.0, 100.0);
  p.min_sites = r.get_int("sync.min_sites", p.min_sites, 1, 10000);
  p.round_deadline_s = r.get_positive("sync.round_deadline_s", p.round_deadline_s, 7 * 86400.0);
  p.upload_encoding = r.get_enum("sync.upload_encoding", p.upload_encoding, kEncodings);
  p.download_encoding = r.get_enum("sync.download_encoding", p.download_encoding, kEncodings);
  p.zstd_level = r.get_int("sync.zstd_level", p.zstd_level, 0, 22);
  p.balance = r.get_enum("sync.balance", p.balance, {"equal_steps", "equal_time"});
  p.min_inner_steps = r.get_int("sync.min_inner_steps", p.min_inner_steps, 1, 1000000);
  if (p.auto_inner_steps && p.max_inner_steps < p.min_inner_steps)
    r.fail("sync.max_inner_steps", "at least sync.min_inner_steps (" + std::to_string(p.min_inner_steps) + ")");
  if (p.auto_inner_steps) p.inner_steps = p.min_inner_steps;  // the first, measuring rounds
  return p;
}

std::string describe_change(const SyncPolicy& a, const SyncPolicy& b) {
  std::ostringstream os;
  os << std::boolalpha;  // auto_inner_steps false -> true, not 0 -> 1
  auto item = [&](const char* k, const auto& x, const auto& y) {
    if (x == y) return;
    if (os.tellp() > 0) os << ", ";
    os << k << " " << x << " -> " << y;
  };
  item("inner_steps", a.inner_steps, b.inner_steps);
  item("min_sites", a.min_sites, b.min_sites);
  item("round_deadline_s", a.round_deadline_s, b.round_deadline_s);
  item("upload_encoding", a.upload_encoding, b.upload_encoding);
  item("download_encoding", a.download_encoding, b.download_encoding);
  item("zstd_level", a.zstd_level, b.zstd_level);
  item("balance", a.balance, b.balance);
  item("min_inner_steps", a.min_inner_steps, b.min_inner_steps);
  item("auto_inner_steps", a.auto_inner_steps, b.auto_inner_steps);
  item("target_comm_fraction", a.target_comm_fraction, b.target_comm_fraction);
  item("max_inner_steps", a.max_inner_steps, b.max_inner_steps);
  item("straggler_margin", a.straggler_margin, b.straggler_margin);
  return os.str();
}

CoordinatorConfig read_coordinator_config(const std::filesystem::path& path,
                                          const std::vector<std::string>& overrides) {
  ConfigReader r = ConfigReader::from_file(path, overrides);
  CoordinatorConfig c;
  c.run_id = r.get_string("coordinator.run_id", "");
  c.rounds = r.get_int("coordinator.rounds", c.rounds, 1, 100000000);
  c.linger_s = r.get_double("coordinator.linger_s", c.linger_s, 0, 86400);
  c.seed = r.get_int("coordinator.seed", c.seed, 0, INT64_MAX);
  c.bind = r.get_string("coordinator.bind", c.bind);
  c.port = r.get_int("coordinator.port", c.port, 0, 65535);
  c.allowed_sites = r.get_string_list("coordinator.allowed_sites", {});
  c.allowed_operators = r.get_string_list("coordinator.allowed_operators", {});
  c.dashboard_bind = r.get_string("coordinator.dashboard_bind", "");
  if (!c.dashboard_bind.empty()) parse_dashboard_bind(r, c);
  c.start_sites = r.get_int("coordinator.start_sites", c.start_sites, 0, 10000);
  c.start_timeout_s = r.get_positive("coordinator.start_timeout_s", c.start_timeout_s, 7 * 86400.0);
  c.max_message_mb = r.get_int("coordinator.max_message_mb", c.max_message_mb, 1, 1 << 20);
  c.spool_min_bytes = r.get_int("coordinator.spool_min_bytes", c.spool_min_bytes, 0, int64_t{1} << 40);
  c.report_memcpy = r.get_bool("coordinator.report_memcpy", c.report_memcpy);
  c.checkpoint_timeout_s = r.get_double("coordinator.checkpoint_timeout_s", c.checkpoint_timeout_s, 1, 86400);
  c.max_connections = r.get_int("coordinator.max_connections", c.max_connections, 4, 100000);
  c.max_connections_per_identity =
      r.get_int("coordinator.max_connections_per_identity", c.max_connections_per_identity, 2, 1000);
  // Defaults: the directory `longhaul certs issue --name coordinator` writes (docs/deployment.md),
  // next to this config file like every relative path in it.
  const std::filesystem::path certs = path.parent_path() / "certs" / "coordinator";
  c.tls.ca_cert = r.get_path("tls.ca_cert", certs / "ca.crt");
  c.tls.cert = r.get_path("tls.cert", certs / "coordinator.crt");
  c.tls.key = r.get_path("tls.key", certs / "coordinator.key");
  c.model = inner::read_model_config(r);
  c.outer.kind = parse_outer_kind(r.get_enum("outer.optimizer", "nesterov", {"nesterov", "sgdm", "avg"}));
  c.outer.lr = r.get_positive("outer.lr", c.outer.lr, 10.0);
  c.outer.momentum = r.get_double("outer.momentum", c.outer.momentum, 0.0, 0.999);
  c.outer.warmup_rounds = r.get_int("outer.warmup_rounds", kDefaultOuterWarmupRounds, 0, 1000000);
  c.outer.max_update_norm = r.get_double("outer.max_update_norm", c.outer.max_update_norm, 0.0, 1e12);
  c.outer.max_update_theta_ratio =
      r.get_double("outer.max_update_theta_ratio", kDefaultMaxUpdateThetaRatio, 0.0, 1e6);
  c.aggregation.kind = parse_aggregation(
      r.get_enum("outer.aggregation", "mean", {"mean", "trimmed_mean", "median"}));
  c.aggregation.weighting =
      parse_weighting(r.get_enum("outer.weighting", "tokens", {"tokens", "uniform", "normalized"}));
  c.aggregation.stale_weight = r.get_double("outer.stale_weight", c.aggregation.stale_weight, 0.0, 1.0);
  c.aggregation.trim = static_cast<int>(r.get_int("outer.trim", c.aggregation.trim, 0, 1000));
  c.aggregation.max_norm_ratio =
      r.get_double("outer.max_norm_ratio", c.aggregation.max_norm_ratio, 1.5, 1e9);
  c.aggregation.max_update_ratio =
      r.get_double("outer.max_update_ratio", c.aggregation.max_update_ratio, 1e-6, 1e9);
  c.max_tokens_per_step =
      r.get_int("coordinator.max_tokens_per_step", c.max_tokens_per_step, 1, int64_t{1} << 40);
  c.full_theta_per_window =
      r.get_int("coordinator.full_theta_per_window", c.full_theta_per_window, 1, 1000000);
  c.full_theta_window_s = r.get_int("coordinator.full_theta_window_s", c.full_theta_window_s, 1, 86400);
  c.sync = read_sync_policy(r);
  c.streaming.fragments = static_cast<int>(r.get_int("sync.fragments", c.streaming.fragments, 1, 1024));
  c.streaming.overlap_steps = r.get_int("sync.overlap_steps", c.streaming.overlap_steps, 0, 1000000);
  c.streaming.merge_alpha = r.get_double("sync.merge_alpha", c.streaming.merge_alpha, 0.0, 0.99);
  check_streaming(r, c.streaming, c.sync, c.model);
  // Optional: the coordinator's own held-out set. Without it, sites evaluate θ on their own
  // validation split and report it (the data never leaves the sites).
  if (r.has("data.path") && !r.get_string("data.path", "").empty()) {
    c.data = inner::read_data_config(r, c.model);
  } else {  // data.path = "" also means none; the section's other keys are then unused
    r.get_string("data.format", "auto");
    r.get_double("data.val_fraction", 0.1, 0, 0.5);
    r.get_int("data.num_shards", 1, 1, 1 << 20);
    r.get_int("data.shard_index", 0, 0, 1 << 20);
  }
  c.eval.every_rounds = r.get_int("eval.every_rounds", c.eval.every_rounds, 0, 1000000);
  c.eval.batches = r.get_int("eval.batches", c.eval.batches, 1, 100000);
  c.eval.batch_size = r.get_int("eval.batch_size", c.eval.batch_size, 1, 4096);
  r.finish();
  if (!c.allowed_sites.empty() && c.sync.min_sites > static_cast<int64_t>(c.allowed_sites.size()))
    r.fail("sync.min_sites", "at most the number of coordinator.allowed_sites");
  c.effective_toml = r.effective_toml();
  return c;
}

namespace {
void flatten(const toml::table& t, const std::string& prefix, std::map<std::string, std::string>& out) {
  for (const auto& [k, v] : t) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* sub = v.as_table()) {
      flatten(*sub, key, out);
    } else {
      std::ostringstream os;
      v.visit([&](const auto& x) { os << x; });
      out[key] = os.str();
    }
  }
}
}  // namespace

std::vector<std::string> fixed_keys_changed(const std::string& a, const std::string& b) {
  std::map<std::string, std::string> fa, fb;
  flatten(toml::parse(a), "", fa);
  flatten(toml::parse(b), "", fb);
  auto live = [](const std::string& k) {
    if (k == "sync.fragments" || k == "sync.overlap_steps" || k == "sync.merge_alpha") return false;
    return k.rfind("sync.", 0) == 0 || k == "coordinator.allowed_sites" || k == "coordinator.allowed_operators";
  };
  std::vector<std::string> changed;
  for (const auto& [k, v] : fb) {
    if (live(k)) continue;
    auto it = fa.find(k);
    if (it == fa.end() || it->second != v) changed.push_back(k);
  }
  for (const auto& [k, v] : fa)
    if (!live(k) && !fb.count(k)) changed.push_back(k);
  return changed;
}

}  // namespace longhaul::outer
