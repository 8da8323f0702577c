#include "outer/coordinator.h"

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>

#include <torch/torch.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/log.h"
#include "inner/batch_sampler.h"
#include "inner/corpus.h"
#include "inner/flat_params.h"
#include "inner/gpt.h"
#include "inner/safetensors_io.h"
#include "outer/aggregator.h"
#include "outer/config_watcher.h"
#include "outer/coordinator_checkpoint.h"
#include "outer/coordinator_metrics.h"
#include "outer/outer_optimizer.h"
#include "outer/param_hash.h"
#include "outer/protocol.h"
#include "outer/round_state.h"
#include "transport/channel_server.h"
#include "transport/codec.h"

namespace longhaul::outer {

namespace fs = std::filesystem;
using json = nlohmann::json;
using transport::Connection;
using transport::Message;

namespace {
std::atomic<bool> g_stop{false};

std::string new_run_id() {
  std::random_device rd;
  std::ostringstream os;
  os << "run-" << std::hex << rd() << rd();
  return os.str();
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Event {
  enum Kind { kOpen, kMessage, kClose } kind;
  std::shared_ptr<Connection> conn;
  Message msg;
  std::string reason;
};

// Per-site registry entry (also checkpointed: counters survive a restart).
struct SiteEntry {
  std::shared_ptr<Connection> conn;  // null when disconnected
  bool welcomed = false;
  bool told_complete = false;  // run_complete sent: the site exits 0
  std::string state = "disconnected";  // disconnected | joined | training | uploaded
  int64_t last_round_uploaded = -1;
  uint64_t bytes_up = 0, bytes_down = 0;
  int64_t uploads_accepted = 0, uploads_rejected = 0, resyncs = 0;
  json to_json() const {
    return {{"state", state},           {"last_round_uploaded", last_round_uploaded},
            {"bytes_up", bytes_up},     {"bytes_down", bytes_down},
            {"uploads_accepted", uploads_accepted}, {"uploads_rejected", uploads_rejected},
            {"resyncs", resyncs}};
  }
};
}  // namespace

struct Coordinator::Impl {
  CoordinatorConfig cfg;
  fs::path config_path, run_dir;
  std::vector<std::string> overrides;

  // Model, θ and the outer step.
  inner::Gpt model{nullptr};
  transport::Manifest manifest;
  uint64_t manifest_hash = 0;
  std::unique_ptr<OuterOptimizer> outer;
  std::vector<float> theta_pub;  // published θ: bitwise what every site holds
  std::unique_ptr<Aggregator> agg;
  std::vector<uint16_t> val_tokens;

  // Rounds.
  std::string run_id;
  int64_t next_round = 0;
  RoundState round;
  SyncPolicy policy;  // in force for the open round
  std::unique_ptr<ConfigWatcher> watcher;
  Clock::time_point round_started{}, started = Clock::now();
  uint64_t round_bytes_up = 0;
  std::map<std::string, SiteEntry> sites;
  int64_t rejected_total = 0, hash_resyncs = 0;
  double last_eval = std::nan("");
  json last_round = json::object();

  // Events from the channel's threads.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Event> events;

  // HTTP snapshot.
  std::mutex snap_mu;
  json status = json::object();
  std::string metrics_text;

  std::unique_ptr<transport::ChannelServer> server;
  std::unique_ptr<std::ofstream> metrics_file;

  void push(Event e) {
    {
      std::lock_guard<std::mutex> l(mu);
      events.push_back(std::move(e));
    }
    cv.notify_one();
  }

  // ---- setup
  void init_state();
  void start_server();
  // ---- events
  void handle(Event& e);
  void on_hello(const std::shared_ptr<Connection>& c, const Message& m);
  void on_upload(const std::shared_ptr<Connection>& c, const Message& m);
  void send(const std::string& site, Message m);
  void send_welcome(const std::string& site);
  void send_round_start(const std::string& site);
  // ---- rounds
  bool ready_to_open();
  void open_round();
  void close_round();
  double evaluate();
  void save_checkpoint();
  void publish_snapshot();
  std::string site_of(const std::shared_ptr<Connection>& c) const;
};

// ------------------------------------------------------------------------------- setup

void Coordinator::Impl::init_state() {
  torch::manual_seed(cfg.seed);
  model = inner::Gpt(cfg.model);
  model->eval();
  manifest = inner::param_manifest(*model);
  manifest_hash = manifest.hash();
  std::vector<float> theta0 = inner::params_to_flat(*model);
  outer = std::make_unique<OuterOptimizer>(cfg.outer, theta0);
  agg = std::make_unique<Aggregator>(static_cast<int64_t>(theta0.size()), cfg.max_norm_ratio);
  theta_pub = theta0;
  run_id = cfg.run_id.empty() ? new_run_id() : cfg.run_id;

  fs::path ck = coordinator_checkpoint_path(run_dir);
  bool fresh = false;
  if (auto st = load_coordinator_checkpoint(ck)) {
    const json& m = st->meta;
    if (m.value("manifest_hash", std::string()) != protocol::hex64(manifest_hash))
      throw UserError(ck.string() + ": checkpoint was written for another model (manifest " +
                      m.value("manifest_hash", std::string("?")) + ", config gives " +
                      protocol::hex64(manifest_hash) + "): use a fresh --run-dir");
    if (st->theta_master.size() != theta0.size()) throw UserError(ck.string() + ": size mismatch");
    run_id = m.at("run_id").get<std::string>();
    if (!cfg.run_id.empty() && cfg.run_id != run_id)
      throw UserError(ck.string() + ": run id '" + run_id + "' differs from coordinator.run_id '" +
                      cfg.run_id + "'");
    next_round = m.at("next_round").get<int64_t>();
    outer->restore(st->theta_master, st->momentum, m.value("outer_steps", int64_t{0}));
    theta_pub = st->theta_published;
    agg->set_previous_norms(m.value("norms", std::vector<double>{}));
    rejected_total = m.value("rejected_total", int64_t{0});
    hash_resyncs = m.value("hash_resyncs", int64_t{0});
    const json registry = m.value("sites", json::object());
    for (auto& [id, s] : registry.items()) {
      SiteEntry e;
      e.bytes_up = s.value("bytes_up", uint64_t{0});
      e.bytes_down = s.value("bytes_down", uint64_t{0});
      e.last_round_uploaded = s.value("last_round_uploaded", int64_t{-1});
      e.uploads_accepted = s.value("uploads_accepted", int64_t{0});
      e.uploads_rejected = s.value("uploads_rejected", int64_t{0});
      e.resyncs = s.value("resyncs", int64_t{0});
      sites[id] = e;
    }
    LH_LOG(Info, "coordinator") << "resumed run " << run_id << " from " << ck.string()
                                << " at round " << next_round << " (θ hash "
                                << protocol::hex64(param_hash(theta_pub)) << ")";
  } else {
    LH_LOG(Info, "coordinator") << "new run " << run_id << ": " << theta0.size()
                                << " parameters, manifest " << protocol::hex64(manifest_hash);
    save_checkpoint();
    fresh = true;
  }
  if (cfg.eval.batches > 0 && !cfg.data.path.empty()) {
    inner::CorpusSpec spec = cfg.data;
    spec.need_val = true;
    val_tokens = inner::load_corpus(spec).val;
  }
  metrics_file = std::make_unique<std::ofstream>(run_dir / "metrics.jsonl", std::ios::app);
  if (fresh) {
    json init = {{"event", "init"}, {"run_id", run_id}, {"param_hash", protocol::hex64(param_hash(theta_pub))},
                 {"parameters", theta_pub.size()}};
    if (!val_tokens.empty()) init["eval_loss"] = last_eval = evaluate();
    *metrics_file << init.dump() << "\n";
    metrics_file->flush();
  }
  policy = cfg.sync;
  watcher = std::make_unique<ConfigWatcher>(config_path, overrides, cfg.effective_toml, cfg.sync);
}

void Coordinator::Impl::start_server() {
  transport::ServerOptions o;
  o.bind = cfg.bind;
  o.port = static_cast<uint16_t>(cfg.port);
  o.tls = cfg.tls;
  o.allowed_peers = cfg.allowed_sites;
  o.allowed_operators = cfg.allowed_operators;  // read-only HTTPS identities (#12)
  o.plain_http_bind = cfg.dashboard_address;    // optional loopback plain-HTTP GETs
  o.plain_http_port = static_cast<uint16_t>(cfg.dashboard_port);
  o.max_message_bytes = static_cast<uint64_t>(cfg.max_message_mb) << 20;
  server = std::make_unique<transport::ChannelServer>(o);
  server->on_open([this](std::shared_ptr<Connection> c) { push({Event::kOpen, c, {}, {}}); });
  server->on_message([this](std::shared_ptr<Connection> c, Message m) {
    push({Event::kMessage, c, std::move(m), {}});
  });
  server->on_close([this](std::shared_ptr<Connection> c, std::string why) {
    push({Event::kClose, c, {}, why});
  });
  auto text = [](int status, std::string type, std::string body) {
    transport::HttpResponse r;
    r.status = status;
    r.content_type = std::move(type);
    r.body = std::move(body);
    return r;
  };
  server->add_route("GET", "/healthz", [text](const transport::HttpRequest&) {
    return text(200, "text/plain", "ok\n");
  });
  server->add_route("GET", "/v1/status", [this, text](const transport::HttpRequest&) {
    std::lock_guard<std::mutex> l(snap_mu);
    return text(200, "application/json", status.dump(2) + "\n");
  });
  server->add_route("GET", "/metrics", [this, text](const transport::HttpRequest&) {
    std::lock_guard<std::mutex> l(snap_mu);
    return text(200, "text/plain; version=0.0.4", metrics_text);
  });
  server->start();
  write_file_atomic(run_dir / "port", std::to_string(server->port()) + "\n");
  if (server->plain_http_port() != 0)
    write_file_atomic(run_dir / "dashboard_port", std::to_string(server->plain_http_port()) + "\n");
  LH_LOG(Info, "coordinator") << "listening on " << cfg.bind << ":" << server->port()
                              << " (WebSocket + HTTPS)";
}

// ------------------------------------------------------------------------------- events

std::string Coordinator::Impl::site_of(const std::shared_ptr<Connection>& c) const {
  for (const auto& [id, s] : sites)
    if (s.conn == c) return id;
  return {};
}

void Coordinator::Impl::send(const std::string& site, Message m) {
  auto it = sites.find(site);
  if (it == sites.end() || !it->second.conn) return;
  it->second.bytes_down += m.payload.size();
  m.header["run_id"] = run_id;
  m.header["site"] = site;
  m.header["fragment"] = 0;
  try {
    it->second.conn->send(std::move(m));
  } catch (const std::exception& e) {
    LH_LOG(Warn, "coordinator") << "send to " << site << " failed: " << e.what();
  }
}

void Coordinator::Impl::handle(Event& e) {
  if (e.kind == Event::kOpen) {
    LH_LOG(Info, "coordinator") << "connection from " << e.conn->peer_id() << " ("
                                << e.conn->peer_address() << ")";
    return;
  }
  if (e.kind == Event::kClose) {
    std::string id = site_of(e.conn);
    if (!id.empty()) {
      sites[id].conn.reset();
      sites[id].welcomed = false;
      sites[id].state = "disconnected";
      LH_LOG(Warn, "coordinator") << "site " << id << " disconnected: " << e.reason;
    }
    return;
  }
  const Message& m = e.msg;
  try {
    if (m.type == protocol::kHello) return on_hello(e.conn, m);
    std::string id = site_of(e.conn);
    if (id.empty() || !sites[id].welcomed)
      throw protocol::ProtocolError("message '" + m.type + "' before hello");
    if (m.header.value("run_id", std::string()) != run_id)
      throw protocol::ProtocolError("message '" + m.type + "' for run '" +
                                    m.header.value("run_id", std::string()) + "', this is run '" +
                                    run_id + "'");
    if (m.type == protocol::kUpload) return on_upload(e.conn, m);
    if (m.type == protocol::kResync) {
      ++sites[id].resyncs;
      ++hash_resyncs;
      LH_LOG(Warn, "coordinator") << "site " << id << " asks for a full resync: "
                                  << m.header.value("reason", std::string("?"));
      send_welcome(id);
      if (round.is_open()) send_round_start(id);
      return;
    }
    throw protocol::ProtocolError("unknown message type '" + m.type + "'");
  } catch (const protocol::ProtocolError& err) {
    LH_LOG(Warn, "coordinator") << "peer " << e.conn->peer_id() << ": " << err.what()
                                << ": closing the connection";
    e.conn->close(err.what());
  }
}

void Coordinator::Impl::on_hello(const std::shared_ptr<Connection>& c, const Message& m) {
  const char* t = protocol::kHello;
  auto refuse = [&](const std::string& why) {
    LH_LOG(Warn, "coordinator") << "refusing " << c->peer_id() << ": " << why;
    Message r{protocol::kRefuse, {{"reason", why}}, {}};
    try {
      c->send(std::move(r));  // the site exits on it; a peer that lingers hits the idle timeout
    } catch (const std::exception&) {
    }
  };
  std::string site = protocol::field<std::string>(m.header, t, "site");
  int version = protocol::field<int>(m.header, t, "protocol");
  uint64_t mh = protocol::parse_hex64(protocol::field<std::string>(m.header, t, "manifest_hash"), t,
                                      "manifest_hash");
  if (site != c->peer_id())
    return refuse("hello says site '" + site + "' but the certificate is for '" + c->peer_id() + "'");
  if (version != protocol::kVersion)
    return refuse("protocol version " + std::to_string(version) + ", coordinator speaks " +
                  std::to_string(protocol::kVersion));
  if (mh != 0 && mh != manifest_hash)
    return refuse("model fingerprint " + protocol::hex64(mh) + " differs from the coordinator's " +
                  protocol::hex64(manifest_hash) +
                  " (the site's checkpoint is for another model: give it a fresh run dir)");
  SiteEntry& s = sites[site];
  if (s.conn && s.conn != c) {
    LH_LOG(Warn, "coordinator") << "site " << site << " reconnected: dropping its old connection";
    s.conn->close("replaced by a new connection");
  }
  s.conn = c;
  s.welcomed = true;
  s.state = "joined";
  LH_LOG(Info, "coordinator") << "site " << site << " joined at round " << next_round;
  send_welcome(site);
  if (next_round >= cfg.rounds) {  // a late joiner after the last round (coordinator lingering)
    send(site, Message{protocol::kRunComplete, {{"rounds", next_round}}, {}});
    s.told_complete = true;
    return;
  }
  if (round.is_open()) {
    round.add_participant(site);
    send_round_start(site);
  }
}

void Coordinator::Impl::send_welcome(const std::string& site) {
  transport::CodecOptions o;
  o.encoding = transport::Encoding::kFp32;
  Message w;
  w.type = protocol::kWelcome;
  w.header = {{"protocol", protocol::kVersion},
              {"round", next_round},
              {"model", cfg.model.to_json()},
              {"manifest_hash", protocol::hex64(manifest_hash)},
              {"param_hash", protocol::hex64(param_hash(theta_pub))}};
  w.payload = transport::encode(theta_pub, manifest, o);
  send(site, std::move(w));
}

void Coordinator::Impl::send_round_start(const std::string& site) {
  Message m;
  m.type = protocol::kRoundStart;
  double left = std::chrono::duration<double>(round.deadline() - Clock::now()).count();
  m.header = {{"round", round.round()},
              {"inner_steps", policy.inner_steps},
              {"upload_encoding", policy.upload_encoding},
              {"download_encoding", policy.download_encoding},
              {"deadline_s", std::max(0.0, left)},
              {"param_hash", protocol::hex64(param_hash(theta_pub))}};
  sites[site].state = "training";
  send(site, std::move(m));
}

void Coordinator::Impl::on_upload(const std::shared_ptr<Connection>& c, const Message& m) {
  const char* t = protocol::kUpload;
  auto tag = protocol::RoundTag::from_json(m.header, t);
  std::string site = c->peer_id();
  if (tag.site != site)
    throw protocol::ProtocolError("upload names site '" + tag.site + "' on " + site + "'s connection");
  double tokens = protocol::field<double>(m.header, t, "tokens");
  SiteEntry& s = sites[site];
  s.bytes_up += m.payload.size();
  auto ack = [&](const char* status, const std::string& reason) {
    Message a{protocol::kUploadAck, {{"round", tag.round}, {"status", status}, {"reason", reason}}, {}};
    send(site, std::move(a));
  };
  UploadVerdict v = round.classify(site, tag.round);
  if (v == UploadVerdict::kDuplicate) return ack(protocol::kDuplicate, "already received");
  if (v != UploadVerdict::kAccept) {
    LH_LOG(Warn, "coordinator") << "upload from " << site << " for round " << tag.round
                                << " dropped: " << to_string(v) << " (round " << round.round()
                                << (round.is_open() ? " open)" : " closed)");
    return ack(protocol::kLate, to_string(v));
  }
  round_bytes_up += m.payload.size();
  std::optional<std::string> why;
  double norm = std::nan("");
  try {
    transport::decode(m.payload, agg->scratch(), manifest_hash);
    why = agg->add_scratch(tokens, &norm);
  } catch (const transport::DecodeError& e) {
    why = std::string("undecodable: ") + e.what();
  }
  round.record(site, !why);
  s.state = "uploaded";
  s.last_round_uploaded = tag.round;
  if (why) {
    ++s.uploads_rejected;
    ++rejected_total;
    LH_LOG(Warn, "coordinator") << "upload from " << site << " for round " << tag.round
                                << " REJECTED: " << *why;
    return ack(protocol::kRejected, *why);
  }
  ++s.uploads_accepted;
  LH_LOG(Info, "coordinator") << "round " << tag.round << ": upload from " << site << " ("
                              << m.payload.size() << " bytes, " << tokens << " tokens, norm "
                              << norm << ")";
  ack(protocol::kAccepted, "");
}

// ------------------------------------------------------------------------------- rounds

bool Coordinator::Impl::ready_to_open() {
  int64_t joined = 0;
  for (const auto& [id, s] : sites) joined += s.welcomed;
  int64_t want = next_round == 0 && cfg.start_sites > 0 ? cfg.start_sites : policy.min_sites;
  if (joined >= want) return true;
  return joined >= policy.min_sites && seconds_since(started) > cfg.start_timeout_s;
}

void Coordinator::Impl::open_round() {
  policy = watcher->current();
  std::set<std::string> members;
  for (const auto& [id, s] : sites)
    if (s.welcomed) members.insert(id);
  auto deadline = Clock::now() + std::chrono::milliseconds(
                                     static_cast<int64_t>(policy.round_deadline_s * 1000));
  round.open(next_round, members, deadline, static_cast<int>(policy.min_sites));
  agg->begin_round();
  round_started = Clock::now();
  round_bytes_up = 0;
  LH_LOG(Info, "coordinator") << "round " << next_round << " open: " << members.size()
                              << " sites, H=" << policy.inner_steps << ", up "
                              << policy.upload_encoding << ", down " << policy.download_encoding
                              << ", deadline " << policy.round_deadline_s << " s";
  for (const auto& id : members) send_round_start(id);
}

void Coordinator::Impl::close_round() {
  const int64_t r = round.round();
  const size_t n = theta_pub.size();
  std::vector<float> buf(n);
  bool applied = agg->finish(buf);
  if (applied) outer->step(buf);
  // Publish: u = θ_master − θ_pub, quantised for download; every replica (this one included)
  // adds exactly the decoded u, so all stay bitwise identical. What quantisation loses stays
  // in θ_master − θ_pub and is sent in a later round (error feedback on the download side).
  // Nothing accepted: no step and no update (empty payload), θ stays bitwise unchanged.
  transport::Bytes payload;
  if (applied) {
    auto master = outer->params();
    for (size_t i = 0; i < n; ++i) buf[i] = master[i] - theta_pub[i];
    transport::CodecOptions o;
    o.encoding = transport::parse_encoding(policy.download_encoding);
    payload = transport::encode(buf, manifest, o);
    transport::decode(payload, buf, manifest_hash);
    for (size_t i = 0; i < n; ++i) theta_pub[i] += buf[i];
  }
  const uint64_t h = param_hash(theta_pub);
  round.close();
  next_round = r + 1;
  std::vector<std::string> contributors;
  for (const auto& [id, ok] : round.outcomes())
    if (ok) contributors.push_back(id);
  save_checkpoint();  // before publishing: a crash after this never re-applies round r

  uint64_t bytes_down = 0;
  for (auto& [id, s] : sites) {
    if (!s.welcomed) continue;
    Message m;
    m.type = protocol::kRoundResult;
    m.header = {{"round", r},
                {"next_round", next_round},
                {"applied", applied},
                {"contributors", contributors},
                {"param_hash", protocol::hex64(h)}};
    m.payload = payload;
    bytes_down += payload.size();
    s.state = "joined";
    send(id, std::move(m));
  }
  const double dur = seconds_since(round_started);
  bool last = next_round >= cfg.rounds;
  double eval = std::nan("");
  if (!val_tokens.empty() &&
      (last || (cfg.eval.every_rounds > 0 && next_round % cfg.eval.every_rounds == 0)))
    eval = last_eval = evaluate();
  // What synchronous data parallel would have sent for the same steps: a ring all-reduce of
  // fp32 gradients per step moves 2(K−1)/K · 4N bytes per worker, i.e. 2(K−1) · 4N in all.
  const int64_t k = static_cast<int64_t>(round.participants().size());
  const double dp_bytes = static_cast<double>(policy.inner_steps) * 2.0 * (k - 1) * 4.0 * n;
  json line = {{"event", "round"},
               {"round", r},
               {"sites", contributors},
               {"participants", k},
               {"applied", applied},
               {"inner_steps", policy.inner_steps},
               {"bytes_up", round_bytes_up},
               {"bytes_down", bytes_down},
               {"dp_bytes", dp_bytes},
               {"duration_s", dur},
               {"param_hash", protocol::hex64(h)}};
  if (!std::isnan(eval)) line["eval_loss"] = eval;
  *metrics_file << line.dump() << "\n";
  metrics_file->flush();
  last_round = line;
  LH_LOG(Info, "coordinator") << "round " << r << " closed in " << dur << " s: "
                              << contributors.size() << "/" << round.participants().size()
                              << " sites, up " << round_bytes_up << " B, down " << bytes_down
                              << " B (sync DP: " << dp_bytes << " B)"
                              << (std::isnan(eval) ? "" : ", eval loss " + std::to_string(eval))
                              << ", θ hash " << protocol::hex64(h);
}

double Coordinator::Impl::evaluate() {
  torch::NoGradGuard ng;
  inner::flat_to_params(*model, theta_pub);
  model->eval();
  const int64_t T = cfg.model.block_size;
  auto offs = inner::evenly_spaced_offsets(val_tokens.size(), T, cfg.eval.batches * cfg.eval.batch_size);
  double sum = 0;
  int64_t nb = 0;
  for (size_t i = 0; i < offs.size(); i += cfg.eval.batch_size) {
    std::vector<int64_t> o(offs.begin() + i,
                           offs.begin() + std::min(offs.size(), i + cfg.eval.batch_size));
    auto b = inner::make_batch(val_tokens, o, T);
    sum += model->loss(b.x, b.y).item<double>();
    ++nb;
  }
  return nb ? sum / nb : std::nan("");
}

void Coordinator::Impl::save_checkpoint() {
  CoordinatorState st;
  json sj = json::object();
  for (const auto& [id, s] : sites) sj[id] = s.to_json();
  st.meta = {{"run_id", run_id},
             {"next_round", next_round},
             {"outer_steps", outer->steps_taken()},
             {"outer_optimizer", to_string(cfg.outer.kind)},
             {"manifest_hash", protocol::hex64(manifest_hash)},
             {"param_hash", protocol::hex64(param_hash(theta_pub))},
             {"model", cfg.model.to_json()},
             {"norms", agg->previous_norms()},
             {"rejected_total", rejected_total},
             {"hash_resyncs", hash_resyncs},
             {"sites", sj}};
  auto p = outer->params();
  st.theta_master.assign(p.begin(), p.end());
  st.theta_published = theta_pub;
  st.momentum = outer->momentum_buffer();
  save_coordinator_checkpoint(coordinator_checkpoint_path(run_dir), st);
}

void Coordinator::Impl::publish_snapshot() {
  json sj = json::object();
  int connected = 0;
  for (const auto& [id, s] : sites) {
    sj[id] = s.to_json();
    connected += s.welcomed;
  }
  json st = {{"run_id", run_id},
             {"round", next_round},
             {"round_open", round.is_open()},
             {"rounds_total", cfg.rounds},
             {"inner_steps", policy.inner_steps},
             {"min_sites", policy.min_sites},
             {"upload_encoding", policy.upload_encoding},
             {"download_encoding", policy.download_encoding},
             {"param_hash", protocol::hex64(param_hash(theta_pub))},
             {"sites", sj},
             {"last_round", last_round},
             {"rejected_uploads", rejected_total}};
  CoordinatorMetrics mt;
  mt.rounds_total = next_round;
  mt.last_round_duration_s = last_round.value("duration_s", 0.0);
  mt.sites_connected = connected;
  mt.rejected_uploads_total = rejected_total;
  for (const auto& [id, s] : sites) mt.sites[id] = {s.bytes_up, s.bytes_down};
  if (!std::isnan(last_eval)) mt.eval_loss = last_eval;
  std::lock_guard<std::mutex> l(snap_mu);
  status = std::move(st);
  metrics_text = render_prometheus(mt);
}

// ------------------------------------------------------------------------------- run

Coordinator::Coordinator(CoordinatorConfig cfg, fs::path config_path,
                         std::vector<std::string> overrides, fs::path run_dir)
    : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(cfg);
  impl_->config_path = std::move(config_path);
  impl_->overrides = std::move(overrides);
  impl_->run_dir = std::move(run_dir);
}

Coordinator::~Coordinator() {
  // Connections must not outlive the server's I/O context: drop every reference first.
  for (auto& [id, e] : impl_->sites) e.conn.reset();
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->events.clear();
  }
  if (impl_->server) impl_->server->stop();
  impl_->server.reset();
}

void Coordinator::request_stop() { g_stop.store(true); }

int Coordinator::run() {
  Impl& s = *impl_;
  fs::create_directories(s.run_dir);
  write_file_atomic(s.run_dir / "coordinator.toml", s.cfg.effective_toml);
  s.init_state();
  if (s.next_round >= s.cfg.rounds) {
    LH_LOG(Info, "coordinator") << "run " << s.run_id << " already finished " << s.next_round
                                << " rounds: nothing to do";
    return 0;
  }
  ConfigWatcher::install_sighup_handler();
  s.start_server();
  // Handles the connection events that arrived, waiting up to 100 ms for the first one.
  auto pump = [&s] {
    std::deque<Event> batch;
    {
      std::unique_lock<std::mutex> l(s.mu);
      s.cv.wait_for(l, std::chrono::milliseconds(100), [&] { return !s.events.empty(); });
      batch.swap(s.events);
    }
    for (auto& e : batch) s.handle(e);
  };
  auto last_poll = Clock::now();
  while (!g_stop.load()) {
    pump();
    if (Clock::now() - last_poll > std::chrono::milliseconds(200)) {
      s.watcher->poll();
      last_poll = Clock::now();
    }
    if (!s.round.is_open()) {
      if (s.next_round >= s.cfg.rounds) break;
      if (s.ready_to_open()) s.open_round();
    } else if (s.round.can_close(Clock::now())) {
      s.close_round();
    } else if (s.round.quorum_wait_log_due(Clock::now(), std::chrono::seconds(60))) {
      LH_LOG(Warn, "coordinator") << "round " << s.round.round() << " is past its deadline with "
                                  << s.round.accepted() << " of min_sites=" << s.round.min_sites()
                                  << " uploads: waiting for a quorum";
    }
    s.publish_snapshot();
  }
  if (s.next_round >= s.cfg.rounds) {
    LH_LOG(Info, "coordinator") << "run " << s.run_id << " complete: " << s.next_round
                                << " rounds, final eval loss " << s.last_eval;
    // The trained model: the published θ (what every site holds), as model.safetensors +
    // model.json in the run dir, loadable into nanoGPT like `longhaul train`'s export.
    inner::flat_to_params(*s.model, s.theta_pub);
    inner::export_model(s.model, s.run_dir);
    LH_LOG(Info, "coordinator") << "exported the final model to " << (s.run_dir / "model.safetensors").string()
                                << " (param hash " << protocol::hex64(param_hash(s.theta_pub)) << ")";
    for (auto& [id, e] : s.sites)
      if (e.welcomed && e.conn) {
        s.send(id, Message{protocol::kRunComplete, {{"rounds", s.next_round}}, {}});
        e.told_complete = true;
      }
    // Linger: a site that was disconnected at the end (its link or process was down) would
    // otherwise retry forever; keep answering its hello with run_complete until every known
    // site has been told or coordinator.linger_s has passed. Then give the last messages a
    // moment to leave before the server goes away.
    auto all_told = [&] {
      for (auto& [id, e] : s.sites)
        if (!e.told_complete) return false;
      return true;
    };
    const auto linger_until = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(s.cfg.linger_s * 1000));
    if (!all_told()) {
      LH_LOG(Info, "coordinator") << "lingering up to " << s.cfg.linger_s
                                  << " s for sites that have not heard the run is complete";
    }
    while (!all_told() && Clock::now() < linger_until && !g_stop.load()) {
      pump();
      s.publish_snapshot();
    }
    auto until = Clock::now() + std::chrono::seconds(2);
    while (Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } else {
    LH_LOG(Info, "coordinator") << "stopping at round " << s.next_round << " (checkpoint kept)";
  }
  for (auto& [id, e] : s.sites)
    if (e.conn) e.conn->close("coordinator shutting down");
  s.server->stop();
  return 0;
}

}  // namespace longhaul::outer
