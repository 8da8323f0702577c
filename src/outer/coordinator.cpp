// The coordinator's event loop: setup, the pump of channel events, round driving, linger after
// the last round, shutdown. The concepts it drives live in their own files (coordinator_impl.h).
#include "outer/coordinator.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>

#include <torch/torch.h>

#include "common/atomic_file.h"
#include "common/log.h"
#include "common/log_tap.h"
#include "inner/flat_params.h"
#include "inner/gpt.h"
#include "inner/safetensors_io.h"
#include "outer/coordinator_impl.h"
#include "outer/dashboard_routes.h"

namespace longhaul::outer {

namespace fs = std::filesystem;
using json = nlohmann::json;
using transport::Connection;
using transport::Message;

namespace {
std::atomic<bool> g_stop{false};
// Per connection: queued messages before the connection is closed as flooding. With the
// transport's backpressure (kUnhandledPerConnection) an honest site never has more queued.
constexpr std::size_t kUnhandledPerConnection = 2;
constexpr std::size_t kQueuedPerConnection = 4;
}  // namespace

Coordinator::Impl::Impl(CoordinatorConfig c, fs::path config, std::vector<std::string> ovr, fs::path dir)
    : cfg(std::move(c)),
      config_path(std::move(config)),
      run_dir(std::move(dir)),
      overrides(std::move(ovr)),
      sites(static_cast<int>(cfg.full_theta_per_window), std::chrono::seconds(cfg.full_theta_window_s)),
      events(kQueuedPerConnection, (static_cast<uint64_t>(cfg.max_message_mb) << 20) * kQueuedPerConnection) {}

void Coordinator::Impl::apply_access(const AccessLists& a) {
  cfg.allowed_sites = a.sites;
  cfg.allowed_operators = a.operators;
  const std::size_t closed = server->set_allowed_peers(a.sites);
  server->set_allowed_operators(a.operators);
  std::string list;
  for (const auto& s : a.sites) list += (list.empty() ? "" : ", ") + s;
  LH_LOG(Info, "coordinator") << "coordinator.allowed_sites now [" << list << "]"
                              << (a.sites.empty() ? " (any site certificate from the CA)" : "") << ": closed "
                              << closed << " connection(s) of sites no longer allowed";
  snapshot_dirty = true;
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
  o.max_connections = static_cast<std::size_t>(cfg.max_connections);
  o.max_connections_per_identity = static_cast<std::size_t>(cfg.max_connections_per_identity);
  o.max_unhandled_messages = kUnhandledPerConnection;
  // Uploads of coordinator.spool_min_bytes or more wait on disk, not in memory, until the event
  // thread handles them one at a time (issue 9 §3): K sites uploading at once cost K × 256 KiB
  // (one read chunk each), not K × payload. The files are unnamed; the directory stays empty.
  // Freed payload buffers kept for reuse (transport/bytes.h): two int8-sized ones (N bytes
  // each) cover a round of the default encoding (one upload in hand, one result); more would
  // sit resident beside θ (issue 13 §1's 5 × 4N budget), the default 1 GiB would keep every
  // welcome of a start. Larger encodings simply allocate afresh.
  transport::set_recycle_limit_bytes(2 * static_cast<uint64_t>(manifest.total_elements()) + (8u << 20));
  o.spool.dir = run_dir / "spool";
  o.spool.min_bytes = static_cast<uint64_t>(cfg.spool_min_bytes);
  fs::create_directories(o.spool.dir);
  server = std::make_unique<transport::ChannelServer>(o);
  server->on_open([this](std::shared_ptr<Connection> c) { events.push({ChannelEvent::kOpen, c, {}, {}}); });
  server->on_message([this](std::shared_ptr<Connection> c, Message m) {
    if (!events.push({ChannelEvent::kMessage, c, std::move(m), {}})) {
      LH_LOG(Warn, "coordinator") << "peer '" << protocol::printable(c->peer_id())
                                  << "' floods the coordinator (event queue share full): closing";
      c->message_handled();
      c->close("too many unhandled messages");
    }
  });
  server->on_close([this](std::shared_ptr<Connection> c, std::string why) {
    events.push({ChannelEvent::kClose, c, {}, std::move(why)});
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
  add_dashboard_routes(*server, history);
  set_log_tap([this](LogLevel l, std::string_view tag, std::string_view msg) {
    history.add_warning(log_level_name(l), tag, msg);
  });
  server->start();
  write_file_atomic(run_dir / "port", std::to_string(server->port()) + "\n");
  if (server->plain_http_port() != 0)
    write_file_atomic(run_dir / "dashboard_port", std::to_string(server->plain_http_port()) + "\n");
  LH_LOG(Info, "coordinator") << "listening on " << cfg.bind << ":" << server->port()
                              << " (WebSocket + HTTPS)";
}

void Coordinator::Impl::pump(std::chrono::milliseconds wait) {
  std::deque<ChannelEvent> batch = events.pop_all(wait);
  for (auto& e : batch) {
    handle(e);  // a peer's fault closes that peer; only JournalError (our own disk) ends the run
    e.msg = Message{};  // its payload goes now, not with the whole batch
    if (e.kind == ChannelEvent::kMessage) e.conn->message_handled();
  }
}

void Coordinator::Impl::finish_run() {
  LH_LOG(Info, "coordinator") << "run " << run_id << " complete: " << next_round << " rounds, final eval loss "
                              << last_eval;
  for (const auto& [id, m] : deferred_stale)  // arrived after the last round closed: no round left
    LH_LOG(Warn, "coordinator") << "late upload from " << id << " arrived after the last round: not applied";
  // The trained model: the published θ (what every site holds), as model.safetensors +
  // model.json in the run dir, loadable into nanoGPT like `longhaul train`'s export.
  {
    inner::Gpt model = evaluator->model_of(theta_pub);  // views of θ_pub: no copy
    inner::export_model(model, run_dir);
  }
  LH_LOG(Info, "coordinator") << "exported the final model to " << (run_dir / "model.safetensors").string()
                              << " (param hash " << protocol::hex64(theta_pub_hash) << ")";
  for (auto& [id, e] : sites)
    if (e.welcomed && e.conn) {
      send(id, Message{protocol::kRunComplete, {{"rounds", next_round}}, {}});
      e.told_complete = true;
    }
  // Linger: a site that was disconnected at the end (its link or process was down) would
  // otherwise retry forever; keep answering its hello with run_complete until every known
  // site has been told or coordinator.linger_s has passed. Then give the last messages a
  // moment to leave before the server goes away.
  auto all_told = [&] {  // a site revoked from coordinator.allowed_sites is not waited for
    const auto& allowed = cfg.allowed_sites;
    for (auto& [id, e] : sites)
      if (!e.told_complete && (allowed.empty() || std::find(allowed.begin(), allowed.end(), id) != allowed.end()))
        return false;
    return true;
  };
  const auto linger_until = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(cfg.linger_s * 1000));
  if (!all_told()) {
    LH_LOG(Info, "coordinator") << "lingering up to " << cfg.linger_s
                                << " s for sites that have not heard the run is complete";
  }
  while (!all_told() && Clock::now() < linger_until && !g_stop.load()) {
    pump(std::chrono::milliseconds(100));
    if (snapshot_dirty) publish_snapshot();
  }
  const auto until = Clock::now() + std::chrono::seconds(2);
  while (Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

Coordinator::Coordinator(CoordinatorConfig cfg, fs::path config_path, std::vector<std::string> overrides,
                         fs::path run_dir)
    : impl_(std::make_unique<Impl>(std::move(cfg), std::move(config_path), std::move(overrides),
                                   std::move(run_dir))) {}

Coordinator::~Coordinator() {
  set_log_tap(nullptr);  // the tap refers to impl_->history
  // Connections must not outlive the server's I/O context. stop() joins the I/O threads, which
  // until then queue events (the closes stop() causes, messages still arriving when run() ended
  // by an exception) holding connections: every reference is dropped after it, before the
  // server and its I/O context go.
  if (impl_->server) impl_->server->stop();
  impl_->sites.detach_all();
  impl_->events.clear();
  impl_->server.reset();
}

void Coordinator::request_stop() { g_stop.store(true); }

int Coordinator::run() {
  Impl& s = *impl_;
  fs::create_directories(s.run_dir);
  write_file_atomic(s.run_dir / "coordinator.toml", s.cfg.effective_toml);
  if (const char* p = std::getenv("LONGHAUL_TEST_CHECKPOINT_PAUSE_S"); p != nullptr && *p != '\0')
    s.checkpoint_pause_s = std::atof(p);  // fault injection: a kill can land inside the write
  s.init_state();
  if (s.next_round >= s.cfg.rounds)  // e.g. killed between the last checkpoint and its publish:
    LH_LOG(Info, "coordinator") << "run " << s.run_id << " already finished " << s.next_round
                                << " rounds: telling the sites that reconnect (up to coordinator.linger_s)";
  ConfigWatcher::install_sighup_handler();
  s.start_server();
  auto last_poll = Clock::now(), last_snapshot = Clock::now();
  s.publish_snapshot();
  while (!g_stop.load()) {
    s.pump(std::chrono::milliseconds(100));
    const auto now = Clock::now();
    if (now - last_poll > std::chrono::milliseconds(200)) {
      s.watcher->poll();
      if (auto a = s.watcher->take_access_change()) s.apply_access(*a);
      last_poll = now;
    }
    if (!s.round.is_open()) {
      if (s.next_round >= s.cfg.rounds) break;
      if (s.ready_to_open()) s.open_round();
    } else if (s.round.can_close(Clock::now())) {
      s.close_round();
      if (s.next_round < s.cfg.rounds && s.ready_to_open()) s.open_round();  // sites train while θ is evaluated
      s.finish_round_line();
    } else if (s.round.quorum_wait_log_due(Clock::now(), std::chrono::seconds(60))) {
      LH_LOG(Warn, "coordinator") << "round " << s.round.round() << " is past its deadline with "
                                  << s.round.accepted() << " of min_sites=" << s.round.min_sites()
                                  << " uploads: waiting for a quorum";
    }
    if (s.snapshot_dirty || Clock::now() - last_snapshot > std::chrono::seconds(1)) {
      s.publish_snapshot();
      last_snapshot = Clock::now();
    }
  }
  s.await_checkpoint();  // the last round's checkpoint is durable before anything else
  if (s.next_round >= s.cfg.rounds) {
    s.finish_run();
  } else {
    LH_LOG(Info, "coordinator") << "stopping at round " << s.next_round << " (checkpoint kept)";
  }
  for (auto& [id, e] : s.sites)
    if (e.conn) e.conn->close("coordinator shutting down");
  s.server->stop();
  return 0;
}

}  // namespace longhaul::outer
