#include <pthread.h>

#include "transport/channel_client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/websocket.hpp>
#include <optional>
#include <random>

#include "common/error.h"
#include "common/log.h"
#include "transport/channel_server.h"
#include "transport/url.h"

namespace longhaul::transport {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

ChannelClient::ChannelClient(ClientOptions options)
    : options_(std::move(options)),
      pacer_(options_.receive_rate_limit_bytes_per_s, options_.receive_added_latency),
      link_timer_(net::make_strand(ioc_)) {
  const Url u = parse_url(options_.url, "wss");
  host_ = u.host;
  port_ = u.port;
  path_ = u.path;
  if (options_.server_name.empty()) options_.server_name = host_;
  if (options_.backoff_initial.count() <= 0 || options_.backoff_max < options_.backoff_initial)
    throw UserError("channel client: need 0 < backoff_initial <= backoff_max");
  if (options_.receive_added_latency.count() < 0)
    throw UserError("channel client: need receive_added_latency >= 0");
  ssl_ctx_ = std::make_unique<net::ssl::context>(make_client_tls_context(options_.tls));
  work_.emplace(net::make_work_guard(ioc_));
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "lh-client-io");  // names show in top -H, perf, gdb
    ioc_.run();
  });
}

ChannelClient::~ChannelClient() {
  close();
  work_.reset();
  // Give the graceful close a moment, then stop.
  for (int i = 0; i < 100 && conn_ && conn_->is_open(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ioc_.stop();
  thread_.join();
}

std::shared_ptr<Connection> ChannelClient::current() const {
  std::lock_guard lock(mu_);
  return conn_ && conn_->is_open() ? conn_ : nullptr;
}

bool ChannelClient::connected() const {
  std::lock_guard lock(mu_);
  return conn_ && link_up_locked(conn_);
}

bool ChannelClient::link_up_locked(const std::shared_ptr<Connection>& c) const {
  return c->is_open() || c == close_on_link_;
}

void ChannelClient::on_arrival(Message m) {
  std::lock_guard lock(mu_);
  if (m.type != kAckType) {
    if (inbox_bytes_ + m.payload.size() > options_.max_inbox_bytes) {
      LH_LOG(Error, "channel") << "inbox over its cap of " << options_.max_inbox_bytes
                               << " bytes: dropping the connection (the caller is not receiving)";
      if (conn_) conn_->abort("inbox full");
      return;
    }
    inbox_bytes_ += m.payload.size();  // until receive() takes it: on the link or in the inbox
  }
  if (!pacer_.enabled()) {
    deliver_locked(std::move(m));
    return;
  }
  const uint64_t wire = FrameWriter(m).wire_bytes(outgoing_payload(m).size());
  // As a receiver at the end of the emulated link would time it: its transmission time too.
  if (options_.receive_rate_limit_bytes_per_s > 0)
    m.receive_s += static_cast<double>(wire) / static_cast<double>(options_.receive_rate_limit_bytes_per_s);
  link_.push_back({pacer_.deliver_at(ReceivePacer::Clock::now(), wire), std::move(m), nullptr});
  net::post(link_timer_.get_executor(), [this] { deliver_due(); });
}

void ChannelClient::on_connection_closed(const std::shared_ptr<Connection>& c) {
  std::lock_guard lock(mu_);
  if (pacer_.enabled() && c == conn_ && !closed_) {
    // The close travels behind the messages that arrived before it.
    close_on_link_ = c;
    link_.push_back({pacer_.deliver_at(ReceivePacer::Clock::now(), 0), std::nullopt, c});
    net::post(link_timer_.get_executor(), [this] { deliver_due(); });
  }
  cv_.notify_all();
}

void ChannelClient::deliver_locked(Message m) {
  if (m.type == kAckType) {
    const auto it = m.header.find("idempotency_key");
    if (it != m.header.end() && it->is_string() && waiting_.count(it->get<std::string>())) {
      acked_.insert(it->get<std::string>());
      cv_.notify_all();
    }
    return;
  }
  inbox_.push_back(std::move(m));
  cv_.notify_all();
}

void ChannelClient::deliver_due() {
  std::lock_guard lock(mu_);
  const auto now = ReceivePacer::Clock::now();
  while (!link_.empty() && link_.front().due <= now) {
    OnLink& f = link_.front();
    if (f.message) {
      deliver_locked(std::move(*f.message));
    } else if (f.closed == close_on_link_) {
      close_on_link_.reset();
      cv_.notify_all();
    }
    link_.pop_front();
  }
  if (link_.empty() || link_timer_armed_) return;  // an armed timer is due no later than the front
  link_timer_armed_ = true;
  link_timer_.expires_at(link_.front().due);
  link_timer_.async_wait([this](boost::system::error_code) {
    link_timer_armed_ = false;
    deliver_due();
  });
}

namespace {

struct Outcome {
  std::shared_ptr<Connection> conn;
  std::optional<ConnectError> error;
};

// One attempt: TCP + TLS + WebSocket within `budget`. Everything it needs is a parameter (copied
// into the coroutine frame): an interrupted connect() returns while the attempt is still
// suspended, and the attempt must not point into that caller's stack. Every step completes with
// an error code (as_tuple), so nothing Boost throws reaches the user: the message comes from
// classify_*() and the raw error stays in ConnectError::detail().
net::awaitable<Outcome> attempt_once(net::io_context& ioc, net::ssl::context& ssl_ctx, std::string host,
                                     std::string port, std::string path, std::string server_name,
                                     uint64_t max_message_bytes, ConnectionLimits limits,
                                     std::chrono::steady_clock::duration budget, ConnectContext ctx) {
  constexpr auto kTuple = net::as_tuple(net::use_awaitable);
  auto exec = net::make_strand(ioc);
  tcp::resolver resolver(exec);
  auto [rs_ec, results] = co_await resolver.async_resolve(host, port, kTuple);
  if (rs_ec) co_return Outcome{nullptr, classify_connect_error(rs_ec, nullptr, ctx)};
  TlsStream stream(beast::tcp_stream(exec), ssl_ctx);
  auto& tcp_layer = beast::get_lowest_layer(stream);
  tcp_layer.expires_after(budget);
  ctx.step = "TCP connect";
  auto [cn_ec, ep] = co_await tcp_layer.async_connect(results, kTuple);
  if (cn_ec) co_return Outcome{nullptr, classify_connect_error(cn_ec, nullptr, ctx)};
  boost::system::error_code opt_ec;
  tcp_layer.socket().set_option(tcp::no_delay(true), opt_ec);
  set_client_peer_name(stream.native_handle(), server_name);
  ctx.step = "TLS handshake";
  auto [hs_ec] = co_await stream.async_handshake(net::ssl::stream_base::client, kTuple);
  if (hs_ec) co_return Outcome{nullptr, classify_connect_error(hs_ec, stream.native_handle(), ctx)};
  const std::string server_id = peer_identity(stream.native_handle());
  WsStream ws(std::move(stream));
  websocket::permessage_deflate pmd;  // off: our codec compresses
  pmd.client_enable = false;
  pmd.server_enable = false;
  ws.set_option(pmd);
  ws.read_message_max(max_message_bytes);
  ctx.step = "WebSocket handshake";
  websocket::response_type res;
  auto [ws_ec] = co_await ws.async_handshake(res, host + ":" + port, path, kTuple);
  if (ws_ec == websocket::error::upgrade_declined) {
    // The server's reason: its X-Longhaul-Refusal header, else the body (bounded by classify).
    std::string reason(res[kRefusalHeader]);
    if (reason.empty()) reason = res.body();
    co_return Outcome{nullptr, classify_upgrade_refusal(static_cast<int>(res.result_int()), reason, ctx)};
  }
  if (ws_ec) co_return Outcome{nullptr, classify_connect_error(ws_ec, ws.next_layer().native_handle(), ctx)};
  beast::get_lowest_layer(ws).expires_never();
  const std::string address = ep.address().to_string() + ":" + std::to_string(ep.port());
  co_return Outcome{std::make_shared<Connection>(std::move(ws), server_id, address, limits), std::nullopt};
}

}  // namespace

std::shared_ptr<Connection> ChannelClient::connect_once() {
  ++attempts_;
  const std::chrono::steady_clock::duration budget = options_.connect_timeout;
  ConnectContext ctx{options_.url, options_.server_name, options_.tls.ca_cert.string(), "resolve"};
  auto fut = net::co_spawn(ioc_,
                           attempt_once(ioc_, *ssl_ctx_, host_, port_, path_, options_.server_name,
                                        options_.max_message_bytes,
                                        connection_limits(options_, options_.connect_timeout), budget, ctx),
                           net::use_future);
  // The tcp_stream timeout ends the attempt; the extra 2 s only guard against a stuck strand.
  const auto give_up = std::chrono::steady_clock::now() + budget + std::chrono::seconds(2);
  while (fut.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (options_.interrupted && options_.interrupted())
      throw ConnectError(ConnectFailure::kTransient, "interrupted");  // the attempt dies with ioc_
    if (std::chrono::steady_clock::now() > give_up)
      throw ConnectError(ConnectFailure::kTransient, "connect attempt did not finish in time");
  }
  Outcome out = fut.get();  // rethrows only what is not a connection failure (UserError, bad_alloc)
  if (out.error) throw *out.error;
  auto conn = std::move(out.conn);
  conn->start([this](std::shared_ptr<Connection>, Message m) { on_arrival(std::move(m)); },
              [this](std::shared_ptr<Connection> c, std::string) { on_connection_closed(c); });
  return conn;
}

void ChannelClient::connect() {
  if (current()) return;
  {
    std::lock_guard lock(mu_);
    if (closed_) throw ChannelError("channel client is closed");
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.retry_deadline;
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = options_.backoff_initial;
  for (int attempt = 1;; ++attempt) {
    std::string why;
    std::optional<ConnectError> last;
    try {
      auto c = connect_once();
      std::lock_guard lock(mu_);
      conn_ = std::move(c);
      LH_LOG(Info, "channel") << "connected to " << options_.url << " (attempt " << attempt << ")";
      return;
    } catch (const ConnectError& e) {
      if (!e.detail().empty()) LH_LOG(Debug, "channel") << e.detail();
      if (e.permanent() || std::string(e.what()) == "interrupted") throw;
      why = e.what();
      last = e;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline && attempt == 1) throw *last;  // one attempt only: its own words
    if (now >= deadline)
      throw ConnectError(ConnectFailure::kTransient, "cannot connect to " + options_.url + " after " +
                                                         std::to_string(attempt) + " attempt(s): " + why);
    // Jitter in [backoff/2, backoff]: spreads reconnect storms after a coordinator restart.
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    auto delay = std::chrono::milliseconds(static_cast<int64_t>(backoff.count() * jitter(rng)));
    delay = std::min(delay, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
    LH_LOG(Warn, "channel") << "connect to " << options_.url << " failed (attempt " << attempt << "): " << why
                            << "; retrying in " << delay.count() << " ms";
    const auto wake = std::chrono::steady_clock::now() + delay;
    while (std::chrono::steady_clock::now() < wake) {
      if (options_.interrupted && options_.interrupted()) throw ConnectError(ConnectFailure::kTransient, "interrupted");
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          std::chrono::milliseconds(50), wake - std::chrono::steady_clock::now()));
    }
    backoff = std::min(backoff * 2, options_.backoff_max);
  }
}

void ChannelClient::send(Message m) { send_shared(std::make_shared<const Message>(std::move(m))); }

void ChannelClient::send_shared(std::shared_ptr<const Message> m) {
  auto c = current();
  if (!c) throw ChannelError("not connected to " + options_.url);
  c->send_shared(std::move(m));
}

std::optional<Message> ChannelClient::receive(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !inbox_.empty() || closed_; });
  if (inbox_.empty()) return std::nullopt;
  Message m = std::move(inbox_.front());
  inbox_.pop_front();
  inbox_bytes_ -= m.payload.size();
  return m;
}

void ChannelClient::send_reliable(Message m, std::chrono::milliseconds timeout) {
  const auto it = m.header.find("idempotency_key");
  if (it == m.header.end() || !it->is_string() || it->get<std::string>().empty())
    throw InvariantError("send_reliable: message '" + m.type + "' needs a non-empty string header.idempotency_key");
  const std::string key = it->get<std::string>();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto shared = std::make_shared<const Message>(std::move(m));  // one copy, resent as is
  {
    std::lock_guard lock(mu_);
    waiting_.insert(key);
  }
  struct Unwait {
    ChannelClient* c;
    std::string key;
    ~Unwait() {
      std::lock_guard lock(c->mu_);
      c->waiting_.erase(key);
      c->acked_.erase(key);
    }
  } unwait{this, key};
  for (int attempt = 1;; ++attempt) {
    if (std::chrono::steady_clock::now() >= deadline)
      throw ChannelError("send_reliable '" + key + "' to " + options_.url + " timed out after " +
                         std::to_string(attempt - 1) + " attempt(s)");
    std::shared_ptr<Connection> c;
    try {
      connect();
      c = current();
      if (!c) continue;
      c->send_shared(shared);
    } catch (const ChannelError& e) {
      LH_LOG(Warn, "channel") << "send_reliable '" << key << "' attempt " << attempt << " failed: " << e.what();
      continue;
    }
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, deadline, [&] { return acked_.count(key) > 0 || !link_up_locked(c) || closed_; });
    if (acked_.count(key)) return;
    if (closed_) throw ChannelError("channel client closed during send_reliable '" + key + "'");
    if (!link_up_locked(c)) {
      LH_LOG(Warn, "channel") << "connection to " << options_.url << " lost before the ack of '" << key
                              << "'; reconnecting and resending (attempt " << attempt + 1 << ")";
    }
  }
}

void ChannelClient::close() {
  std::shared_ptr<Connection> c;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    c = conn_;
    cv_.notify_all();
  }
  if (c) c->close("client closing");
}

}  // namespace longhaul::transport
