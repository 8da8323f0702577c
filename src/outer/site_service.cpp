#include "outer/site_service.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <optional>
#include <random>
#include <thread>

#include <torch/torch.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/log.h"
#include "inner/checkpoint.h"
#include "inner/device_quantizer.h"
#include "inner/flat_params.h"
#include "inner/flat_range.h"
#include "inner/residual_backup.h"
#include "inner/trainer.h"
#include "outer/fragment_layout.h"
#include "outer/fragment_merge.h"
#include "outer/param_hash.h"
#include "outer/message_schema.h"
#include "outer/protocol.h"
#include "outer/site_follower.h"
#include "transport/channel_client.h"
#include "transport/channel_server.h"
#include "transport/codec.h"
#include "transport/wire_format.h"

namespace longhaul::outer {

namespace fs = std::filesystem;
using json = nlohmann::json;
using transport::Message;
using Ms = std::chrono::milliseconds;

namespace {
std::atomic<bool> g_stop{false};
constexpr uint64_t kRangePiece = uint64_t{1} << 20;  // floats per piece of the local parameters read at once

// fn(flat offset, length) for fragment f's ranges cut into pieces of at most kRangePiece
// floats, in gather order.
template <class Fn>
void for_each_fragment_piece(const FragmentLayout& l, int f, Fn&& fn) {
  for (const FragmentRange& fr : l.fragment(f).ranges)
    for (uint64_t b = 0; b < fr.numel; b += kRangePiece) fn(fr.offset + b, std::min<uint64_t>(kRangePiece, fr.numel - b));
}

std::vector<float> load_floats(const fs::path& p, size_t n) {
  std::string s = read_file(p);
  if (s.size() != n * sizeof(float))
    throw DataError(p.string() + ": expected " + std::to_string(n * sizeof(float)) + " bytes, found " +
                    std::to_string(s.size()) + " (residual of another model?)");
  std::vector<float> v(n);
  std::memcpy(v.data(), s.data(), s.size());
  return v;
}
}  // namespace

struct SiteService::Impl {
  SiteConfig cfg;
  fs::path run_dir;
  std::unique_ptr<transport::ChannelClient> client;
  std::shared_ptr<inner::Corpus> corpus;
  std::unique_ptr<inner::Trainer> trainer;
  transport::Manifest manifest;
  uint64_t manifest_hash = 0;
  std::vector<float> theta;            // θ_round as published (bitwise the coordinator's)
  std::vector<float> residual;         // error feedback e_k, all of θ
  // The device path (issue 13 §2): a site whose model is on a GPU (P = 1, τ = 0) keeps θ_r and
  // the residual there instead (theta and residual above stay empty): Δ and its int8/int4
  // quantization are computed on the device and only the quantized bytes cross to the host.
  // LONGHAUL_SITE_DEVICE_QUANTIZE=1 takes this path on the CPU too (tests).
  std::optional<torch::Device> state_device;
  torch::Tensor theta_dev, residual_dev;  // 1-D fp32 on *state_device
  bool on_device() const { return state_device.has_value(); }
  bool have_theta() const { return on_device() ? theta_dev.defined() : !theta.empty(); }
  uint64_t theta_hash() const { return on_device() ? inner::tensor_xxh64(theta_dev) : param_hash(theta); }
  void theta_to_params() {
    if (on_device()) return inner::flat_tensor_to_params(*trainer->model(), theta_dev);
    inner::flat_to_params(*trainer->model(), theta);
  }
  void set_theta(const Message& m);           // θ ← decode(welcome payload)
  void add_to_theta(const Message& m);        // θ += decode(round result payload), P = 1
  transport::Bytes encode_upload(const transport::CodecOptions& o);  // P = 1: Q(θ_r − θ_local + e)
  // The residual's slice of the last upload's fragment as it was before that upload (tag: the
  // fragment; P = 1: all of it), restored if the upload is refused. Kept in a file in the run
  // dir, not in memory: 4N bytes the site would otherwise carry through its upload (issue 13
  // §2); dropped once the upload is settled. Set at construction (run_dir is known then).
  std::optional<inner::ResidualBackup> backup;
  void backup_residual(int f, const torch::Tensor& slice) { backup->save(slice, f); }
  void restore_residual();
  void drop_residual_backup() { backup->drop(); }
  // Streaming DiLoCo (issue #11; the welcome carries the run's fixed schedule). θ above stays the
  // global θ (bitwise the coordinator's); the model holds this site's local parameters, which
  // differ from θ in every fragment not just exchanged. P = 1 and τ = 0: plain DiLoCo.
  int fragments = 1;
  int64_t overlap_steps = 0;  // τ: steps trained while a fragment is in flight
  float merge_alpha = 0;      // α of the merge after an overlapped exchange
  std::optional<FragmentLayout> layout;  // set at the welcome
  bool streaming() const { return fragments > 1 || overlap_steps > 0; }
  // The τ steps trained after the last upload: they count in the next round's upload.
  int64_t ahead_steps = 0, ahead_tokens = 0;
  double ahead_loss_sum = 0, ahead_compute_s = 0;
  // Inner steps trained since the last checkpoint (issue #14 §4). A stop with any is a stop
  // mid-round: those steps are discarded with the model, AdamW state and data cursor they moved
  // (the checkpoint on disk is the consistent state at the last upload); never saved half-way.
  int64_t steps_unsaved = 0;
  void forget_ahead() { ahead_steps = ahead_tokens = 0, ahead_loss_sum = ahead_compute_s = 0; }
  int64_t round = -1;                  // the round θ belongs to
  std::string run_id;
  // The last upload sent, kept until it is settled: its round's result lists it, or its ack
  // came back (accepted: applied in that or, if late, the next round; anything else: dropped).
  // An upload still unacked when its round's result arrives was late: the coordinator may count
  // it in the next round (stale) and it is re-sent once if the connection drops meanwhile.
  std::shared_ptr<const Message> pending_upload;  // shared with the channel's send queue: never copied
  bool pending_acked = false;   // its upload_ack has arrived
  int64_t pending_conn = 0;     // `connections` when it was sent
  int64_t connections = 0;      // successful joins so far
  int64_t pending_round() const { return pending_upload ? pending_upload->header.value("round", int64_t{-1}) : -1; }
  int64_t hash_mismatches = 0;
  uint64_t bytes_up = 0, bytes_down = 0;
  double last_train_loss = std::nan("");
  int64_t last_tokens = 0;
  std::ofstream metrics;
  bool done = false;
  FollowerLink* followers = nullptr;   // rank 0 of a multi-process site: the other ranks
  json model_json;                     // the coordinator's model (sent to the followers)
  uint64_t last_trained_hash = 0;      // θ_local after the last round's inner steps
  std::chrono::steady_clock::time_point upload_sent{};  // for the wait time reported next round
  double last_wait_s = -1;             // upload sent -> next round_start, seconds (-1: unknown)
  double last_download_s = -1;         // the last round_result's transfer, seconds (-1: none yet)
  uint64_t last_download_bytes = 0;    // its payload bytes
  std::optional<std::chrono::steady_clock::time_point> unreachable_since;  // first failed join attempt

  void connect_and_join();
  void handle(const Message& m);
  void on_welcome(const Message& m);
  void on_round_start(const Message& m);
  void on_round_result(const Message& m);
  void send(Message m) {
    m.header["run_id"] = run_id;
    m.header["site"] = cfg.id;
    if (!m.header.contains("fragment")) m.header["fragment"] = 0;
    bytes_up += m.payload.size();
    client->send(std::move(m));
  }
  // The upload kept in pending_upload (its header complete), sent without a copy.
  void send_pending() {
    bytes_up += pending_upload->payload.size();
    client->send_shared(pending_upload);
  }
  void resync(const std::string& why) {
    LH_LOG(Warn, "site") << cfg.id << ": requesting a full resync: " << why;
    send(Message{protocol::kResync, {{"round", round}, {"reason", why}}, {}});
  }
  void save_state();
  void load_state(const fs::path& checkpoint);  // the trainer exists; residual sized
  uint64_t checkpoint_manifest_hash();
  Message make_hello();
  int64_t trainer_block_size() const { return model_json.value("block_size", int64_t{0}); }
};

Message SiteService::Impl::make_hello() {
  // What the coordinator checks at join: identity, protocol, model, and the training and data
  // layout that bound this site's upload weights (tokens per step) and must agree across sites.
  const auto& t = cfg.train.train;
  const auto& d = cfg.train.data;
  return Message{protocol::kHello,
                 {{"site", cfg.id},
                  {"protocol", protocol::kVersion},
                  {"manifest_hash", protocol::hex64(checkpoint_manifest_hash())},
                  {"round", round},
                  {"train",
                   {{"batch_size", t.batch_size}, {"grad_accum", t.grad_accum}}},
                  {"data",
                   {{"num_shards", d.num_shards},
                    {"shard_index", d.shard_index},
                    {"val_fraction", d.val_fraction}}}},
                 {}};
}

uint64_t SiteService::Impl::checkpoint_manifest_hash() {
  if (manifest_hash) return manifest_hash;
  if (auto p = inner::latest_checkpoint(run_dir)) return inner::read_checkpoint_meta(*p).manifest_hash;
  return 0;
}

namespace {
constexpr int kPermanentAttempts = 2;  // a permanent failure seen this often in a row: exit 2

// What to check for each permanent failure: the config keys involved (one clause).
std::string hint(transport::ConnectFailure k, const SiteConfig& cfg) {
  using F = transport::ConnectFailure;
  switch (k) {
    case F::kRefusedIdentity:
      return "the coordinator's coordinator.allowed_sites must list '" + cfg.id + "', the CN of tls.cert '" +
             cfg.tls.cert.string() + "'";
    case F::kServerNotVerified:
      return "tls.ca_cert = '" + cfg.tls.ca_cert.string() + "' must be the run's ca.crt, the CA that signed the "
             "coordinator's certificate";
    case F::kNameMismatch:
      return "site.coordinator must use a name or address the coordinator's certificate carries (reissue it with "
             "--dns/--ip), or set site.server_name to one it carries";
    case F::kCertificateRejected:
      return "tls.cert = '" + cfg.tls.cert.string() + "' must be issued by the run's CA (`longhaul certs issue`) "
             "and be valid now";
    case F::kProtocol:
      return "site.coordinator = '" + cfg.coordinator_url + "' must be the coordinator's wss:// address and port";
    case F::kWrongPath:
      return "the path of site.coordinator = '" + cfg.coordinator_url + "' must be the coordinator's (default /v1/ws)";
    case F::kTransient:
      break;
  }
  return {};
}

// Sleeps up to `d`, waking early when a stop was requested (SIGTERM is answered within 50 ms).
void interruptible_sleep(std::chrono::duration<double> d) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(d);
  while (std::chrono::steady_clock::now() < until && !g_stop.load()) std::this_thread::sleep_for(Ms(50));
}
}  // namespace

void SiteService::Impl::connect_and_join() {
  std::mt19937_64 rng(std::random_device{}());
  double backoff = 0.5;  // seconds, before jitter; doubles up to site.reconnect_max_s
  int permanent = 0;     // consecutive permanent failures
  while (!g_stop.load()) {
    try {
      transport::ClientOptions o;
      o.url = cfg.coordinator_url;
      o.tls = cfg.tls;
      o.server_name = cfg.server_name;
      // One attempt per call: the backoff lives here, and SIGTERM interrupts an attempt.
      o.connect_timeout = std::chrono::seconds(static_cast<int64_t>(std::ceil(cfg.connect_timeout_s)));
      o.retry_deadline = std::chrono::seconds(0);
      o.interrupted = [] { return g_stop.load(); };
      cfg.link.apply(o);  // [link] WAN emulation; all zero (off) by default
      client = std::make_unique<transport::ChannelClient>(o);
      client->connect();
      client->send(make_hello());
      auto until = std::chrono::steady_clock::now() +
                   Ms(static_cast<int64_t>(cfg.connect_timeout_s * 1000));
      while (std::chrono::steady_clock::now() < until && !g_stop.load()) {
        auto m = client->receive(Ms(200));
        if (!m) {
          if (!client->connected()) throw transport::ChannelError("the connection closed before the welcome");
          continue;
        }
        if (m->type == protocol::kRefuse)
          throw UserError("coordinator refused site '" + cfg.id +
                          "': " + m->header.value("reason", std::string("?")));
        if (m->type == protocol::kWelcome) {
          on_welcome(*m);
          ++connections;
          unreachable_since.reset();
          return;
        }
        LH_LOG(Warn, "site") << "ignoring '" << m->type << "' before welcome";
      }
      if (g_stop.load()) break;
      throw transport::ChannelError("no welcome within " + std::to_string(cfg.connect_timeout_s) + " s");
    } catch (const UserError&) {
      throw;
    } catch (const std::exception& e) {
      client.reset();
      if (g_stop.load()) break;
      const auto* ce = dynamic_cast<const transport::ConnectError*>(&e);
      if (ce != nullptr && ce->permanent()) {
        const std::string line = cfg.id + ": cannot join " + cfg.coordinator_url + ": " + ce->what() + " (" +
                                 hint(ce->kind(), cfg) + ")";
        if (++permanent >= kPermanentAttempts) throw UserError(line);
        LH_LOG(Warn, "site") << line << "; trying once more in 1 s";
        interruptible_sleep(std::chrono::seconds(1));
        continue;
      }
      permanent = 0;
      const auto now = std::chrono::steady_clock::now();
      if (!unreachable_since) unreachable_since = now;
      const double delay = backoff * std::uniform_real_distribution<double>(0.5, 1.0)(rng);
      const auto down = std::chrono::duration_cast<std::chrono::seconds>(now - *unreachable_since).count();
      LH_LOG(Warn, "site") << cfg.id << ": coordinator " << cfg.coordinator_url << " unreachable for " << down
                           << " s (" << e.what() << "); retrying in " << std::fixed << std::setprecision(1) << delay
                           << " s";
      interruptible_sleep(std::chrono::duration<double>(delay));
      backoff = std::min(backoff * 2, cfg.reconnect_max_s);
    }
  }
}

void SiteService::Impl::on_welcome(const Message& m) {
  const protocol::Welcome w = protocol::parse_welcome(m.header);
  if (!run_id.empty() && w.run_id != run_id && trainer)
    throw UserError("coordinator now runs '" + protocol::printable(w.run_id) + "' but this site's state is for run '" +
                    run_id + "': give the site a fresh run dir to join another run");
  run_id = w.run_id;
  auto model = inner::GptConfig::from_json(w.model);
  const uint64_t mh = w.manifest_hash;
  if (!trainer) {
    inner::TrainConfig tc = cfg.train;
    tc.model = model;
    tc.data.block_size = model.block_size;
    tc.data.vocab_size = model.vocab_size;
    corpus = std::make_shared<inner::Corpus>(inner::load_corpus(tc.data));
    trainer = std::make_unique<inner::Trainer>(tc, corpus, followers ? &followers->group() : nullptr);
    model_json = w.model;
    manifest = inner::param_manifest(*trainer->model());
    manifest_hash = manifest.hash();
    // The process-wide cache of freed payload buffers (transport/bytes.h, 1 GiB by default) would
    // keep the welcome's fp32 θ (4N) and each round's payloads resident through training (issue
    // 13 §2): a site keeps at most two int8 payloads' worth (an upload and a result, N bytes
    // each), so the larger buffers go back to the system when freed.
    transport::set_recycle_limit_bytes(2 * manifest.total_elements());
    const torch::Device dev = trainer->model()->parameters().front().device();
    const char* force = std::getenv("LONGHAUL_SITE_DEVICE_QUANTIZE");
    if ((!dev.is_cpu() || (force && std::string(force) == "1")) && w.fragments == 1 && w.overlap_steps == 0) {
      state_device = dev;
      residual_dev = torch::zeros({static_cast<int64_t>(manifest.total_elements())},
                                  torch::TensorOptions().dtype(torch::kFloat32).device(dev));
      LH_LOG(Info, "site") << cfg.id << ": θ_r and the residual on " << dev.str()
                           << ": the pseudo-gradient is quantized there";
    } else {
      residual.assign(manifest.total_elements(), 0.f);
    }
    if (auto p = inner::latest_checkpoint(run_dir)) {
      const std::string ck_run = inner::read_checkpoint_meta(*p).extra.value("run_id", std::string());
      if (!ck_run.empty() && ck_run != run_id)
        throw UserError(p->string() + " is from run '" + ck_run + "' but the coordinator runs '" +
                        protocol::printable(run_id) +
                        "': this site's state belongs to another run; give it a fresh --run-dir");
      load_state(*p);
    }
    LH_LOG(Info, "site") << cfg.id << ": model " << manifest.total_elements() << " parameters, "
                         << corpus->train.size() << " training tokens in shard "
                         << cfg.train.data.shard_index << "/" << cfg.train.data.num_shards;
  }
  if (mh != manifest_hash)
    throw UserError("coordinator's model fingerprint " + protocol::hex64(mh) +
                    " differs from the one this build derives (" + protocol::hex64(manifest_hash) +
                    ") from the same config: versions differ?");
  // The state's place was chosen at the first welcome; a later one (a restarted coordinator)
  // must not switch to streaming under it (the device path serves P = 1, τ = 0 only).
  if (on_device() && (w.fragments != 1 || w.overlap_steps != 0))
    throw UserError("the coordinator now asks for sync.fragments = " + std::to_string(w.fragments) +
                    ", sync.overlap_steps = " + std::to_string(w.overlap_steps) +
                    " but this site process keeps its state on " + state_device->str() +
                    " for a run without streaming: restart the site");
  fragments = w.fragments;
  overlap_steps = w.overlap_steps;
  merge_alpha = static_cast<float>(w.merge_alpha);
  layout = FragmentLayout::strided(manifest, fragments);
  if (streaming() && layout->hash() != w.layout_hash)
    throw UserError("coordinator's fragment layout " + protocol::hex64(w.layout_hash) + " for sync.fragments = " +
                    std::to_string(fragments) + " differs from the one this build derives (" +
                    protocol::hex64(layout->hash()) + "): versions differ?");
  if (streaming())
    LH_LOG(Info, "site") << cfg.id << ": streaming DiLoCo, " << fragments << " fragment(s), overlap "
                         << overlap_steps << " steps, merge alpha " << merge_alpha;
  forget_ahead();  // the local parameters restart from the welcome's θ
  bytes_down += m.payload.size();
  last_download_s = m.receive_s;  // the welcome's θ is the first download the link carried
  last_download_bytes = m.payload.size();
  set_theta(m);
  if (theta_hash() != w.param_hash) throw transport::ChannelError("welcome θ hash mismatch");
  theta_to_params();
  round = w.round;
  LH_LOG(Info, "site") << cfg.id << ": joined run " << run_id << " at round " << round;
}

void SiteService::Impl::on_round_start(const Message& m) {
  const protocol::RoundStart rs = protocol::parse_round_start(m.header);
  const int64_t r = rs.round;
  if (upload_sent != std::chrono::steady_clock::time_point{})
    last_wait_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - upload_sent).count();
  if (r < round) {  // queued while this site was busy; it has applied that round's result since
    LH_LOG(Debug, "site") << cfg.id << ": ignoring the round_start of round " << r << " (θ is at round " << round << ")";
    return;
  }
  if (r != round) return resync("round_start for round " + std::to_string(r) + " but θ is at round " +
                                std::to_string(round));
  if (rs.have_upload) {  // reconnected after the coordinator took the upload: wait for the result
    LH_LOG(Info, "site") << cfg.id << ": round " << r << " upload already held by the coordinator; waiting";
    return;
  }
  // The upload of round r is kept until round r's result: a coordinator that restarted before
  // the round closed lost it, and gets it again here (same idempotency key) — never retrained.
  if (pending_round() == r) {
    LH_LOG(Info, "site") << cfg.id << ": re-sending round " << r << " upload after reconnect";
    send_pending();
    pending_conn = connections;
    return;
  }
  // A late upload of the previous round, unacked and sent on a connection that has since
  // dropped: once more (same idempotency key; the coordinator may still count it, stale).
  if (pending_upload && pending_round() == r - 1 && !pending_acked && pending_conn != connections) {
    LH_LOG(Info, "site") << cfg.id << ": re-sending the late round " << r - 1 << " upload after reconnect";
    send_pending();
    pending_conn = connections;
  }
  const int64_t H = rs.inner_steps;  // steps since the previous exchange (streaming: this fragment's gap)
  const int f = rs.fragment;
  if (f >= fragments)
    throw protocol::ProtocolError("round_start for fragment " + std::to_string(f) + " but the run has " +
                                  std::to_string(fragments) + " fragment(s)");
  transport::CodecOptions o;
  o.encoding = transport::parse_encoding(rs.upload_encoding);
  o.zstd_level = rs.zstd_level;  // 0: off; else shuffle + zstd where it saves
  // Streaming: the τ steps trained while the previous fragment was in flight count here.
  const int64_t now_steps = std::max<int64_t>(0, H - ahead_steps);
  LH_LOG(Info, "site") << cfg.id << ": round " << r << ": training " << now_steps << " steps"
                       << (streaming() ? " (fragment " + std::to_string(f) + ")" : std::string());
  if (!streaming()) theta_to_params();
  if (rs.schedule_step) trainer->follow_schedule(static_cast<double>(*rs.schedule_step), rs.schedule_stride);
  // θ_r on this site's own held-out split (the coordinator combines the sites' losses);
  // streaming: the global θ once per P rounds, evaluated in place of the local parameters.
  double eval_loss = std::nan("");
  if (!rs.evaluate) {  // not this round (the coordinator's eval.every_rounds)
  } else if (!streaming()) {
    eval_loss = trainer->evaluate();
  } else if (r % fragments == 0) {
    const std::vector<float> local = inner::params_to_flat(*trainer->model());
    inner::flat_to_params(*trainer->model(), theta);
    eval_loss = trainer->evaluate();
    inner::flat_to_params(*trainer->model(), local);
  }
  // compute_s: the inner steps only (the coordinator derives the site's step rate from it).
  const auto t_compute = std::chrono::steady_clock::now();
  const int64_t eval_tokens = cfg.train.train.eval_batches * cfg.train.train.batch_size * trainer_block_size();
  if (followers) {  // they run this round's steps and the overlap after its upload
    const uint64_t h = streaming() ? inner::params_xxh64(*trainer->model()) : theta_hash();
    followers->start_round(r, now_steps + overlap_steps, now_steps, model_json, h, *trainer);
  }
  auto keep_going = [&] { return followers ? followers->step_gate(!g_stop.load()) : !g_stop.load(); };
  int64_t tokens = ahead_tokens, steps = ahead_steps;
  double loss_sum = ahead_loss_sum;
  int64_t k = 0;
  for (; k < now_steps && keep_going(); ++k, ++steps, ++steps_unsaved) {
    auto st = trainer->train_steps(1);
    tokens += st.tokens;
    loss_sum += st.mean_loss;
  }
  if (k < now_steps) return;  // stopped mid-round: abandoned (run() discards its steps)
  const double compute_s =
      ahead_compute_s + std::chrono::duration<double>(std::chrono::steady_clock::now() - t_compute).count();
  forget_ahead();
  // Memory (issue 13 §2): the stale gradients go first, so θ_r and the residual (4N bytes each)
  // sit beside the model and AdamW state only, never beside 4N of gradients. P = 1: Δ is never
  // whole (computed a chunk at a time from θ_r and the parameters while encoding) and the
  // residual's backup goes to a file: the upload holds 5 x 4N + the payload.
  trainer->release_gradients();
  Message up;
  up.type = protocol::kUpload;
  last_trained_hash = inner::params_xxh64(*trainer->model());
  if (!streaming()) {
    up.payload = encode_upload(o);
  } else {  // fragment f only: Δ_f = θ[f] − θ_local[f], its residual slice, its manifest
    std::vector<float> delta = layout->gather(f, theta);
    {  // θ_local[f] read range by range from the parameters: no 4N copy of them
      const inner::FlatParamRange local(*trainer->model());
      std::vector<float> mine;
      size_t k = 0;
      for_each_fragment_piece(*layout, f, [&](uint64_t at, uint64_t n) {
        mine.resize(n);
        local.read(at, mine);
        for (const float v : mine) delta[k] -= v, ++k;
      });
    }
    std::vector<float> res = layout->gather(f, residual);
    backup_residual(f, torch::from_blob(res.data(), {static_cast<int64_t>(res.size())}, torch::kFloat32));
    up.payload = transport::encode_with_feedback(delta, res, layout->manifest(f), o);
    layout->scatter(f, res, residual);
  }  // Δ is freed before the message is sent
  last_train_loss = loss_sum / std::max<int64_t>(1, steps);
  last_tokens = tokens;
  up.header = {{"round", r}, {"tokens", tokens}, {"steps", steps}, {"train_loss", last_train_loss},
               {"compute_s", compute_s},
               {"idempotency_key", cfg.id + "/" + std::to_string(r)}};
  if (last_wait_s >= 0) up.header["wait_s"] = last_wait_s;
  if (std::isfinite(eval_loss)) {
    up.header["eval_loss"] = eval_loss;
    up.header["eval_tokens"] = eval_tokens;
  }
  const auto now = std::chrono::steady_clock::now();
  if (upload_sent != std::chrono::steady_clock::time_point{})
    up.header["cycle_s"] = std::chrono::duration<double>(now - upload_sent).count();
  if (last_download_s >= 0) {
    up.header["download_s"] = last_download_s;
    up.header["download_bytes"] = last_download_bytes;
  }
  upload_sent = now;
  up.header["run_id"] = run_id;
  up.header["site"] = cfg.id;
  up.header["fragment"] = f;
  const size_t upload_bytes = up.payload.size();
  pending_upload = std::make_shared<const Message>(std::move(up));
  pending_acked = false;
  pending_conn = connections;
  LH_LOG(Info, "site") << cfg.id << ": round " << r << ": uploading " << upload_bytes << " bytes ("
                       << transport::encoding_name(o.encoding) << "), train loss " << last_train_loss;
  send_pending();
  save_state();
  // What this round trained, beside the optimizer step it ends at: over a run, the steps of a
  // site's uploads add up to its step count (nothing trained is lost or counted twice).
  metrics << json{{"event", "upload"}, {"round", r}, {"fragment", f}, {"steps", steps}, {"tokens", tokens},
                  {"step", trainer->steps_done()}, {"bytes", upload_bytes}}.dump()
          << "\n";
  metrics.flush();
  // Overlap (sync.overlap_steps = τ): keep training while the upload and the round's result
  // travel (the channel sends from its own I/O thread); the result is merged after exactly τ
  // steps (on_round_result), however early it arrives. Counted in the next round's upload.
  if (overlap_steps > 0) {
    const auto t_ahead = std::chrono::steady_clock::now();
    for (int64_t k = 0; k < overlap_steps && keep_going(); ++k) {
      auto st = trainer->train_steps(1);
      ++ahead_steps;
      ++steps_unsaved;
      ahead_tokens += st.tokens;
      ahead_loss_sum += st.mean_loss;
    }
    ahead_compute_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_ahead).count();
  }
}

void SiteService::Impl::on_round_result(const Message& m) {
  const protocol::RoundResult res = protocol::parse_round_result(m.header);
  const int64_t r = res.round, next = res.next_round;
  if (r != round) return resync("round_result for round " + std::to_string(r) + " but θ is at round " +
                                std::to_string(round));
  bytes_down += m.payload.size();
  last_download_s = m.receive_s;
  last_download_bytes = m.payload.size();
  // The round's result settles its upload (acks precede results on the connection): the
  // residual's backup is no longer needed.
  drop_residual_backup();
  const int f = res.fragment;
  if (f >= fragments)
    throw protocol::ProtocolError("round_result for fragment " + std::to_string(f) + " but the run has " +
                                  std::to_string(fragments) + " fragment(s)");
  if (!m.payload.empty()) {  // empty: the round applied nothing, θ is unchanged
    if (fragments == 1) {
      add_to_theta(m);
    } else {  // θ[f] += decode(payload), as the coordinator added it
      std::vector<float> u(layout->fragment(f).numel);
      transport::decode(m.payload, u, layout->manifest(f).hash());
      add_to_fragment(*layout, f, u, theta);
    }
  }
  const uint64_t want = res.param_hash;
  uint64_t got = theta_hash();
  if (got != want) {
    ++hash_mismatches;
    return resync("θ hash " + protocol::hex64(got) + " after round " + std::to_string(r) +
                  " differs from the published " + protocol::hex64(want));
  }
  round = next;
  if (!streaming()) {
    theta_to_params();
  } else {  // fragment f back from θ: copied (τ = 0) or mixed with the τ steps since the upload
    // merge_fragment()'s arithmetic, range by range in the parameters: no 4N copy of them.
    const float alpha = overlap_steps > 0 ? merge_alpha : 0.f;
    const inner::FlatParamRange local(*trainer->model());
    std::vector<float> buf;
    for_each_fragment_piece(*layout, f, [&](uint64_t at, uint64_t n) {
      buf.resize(n);
      if (alpha != 0.f) local.read(at, buf);
      merge_range(alpha, std::span<const float>(theta).subspan(at, n), buf);
      local.write(at, buf);
    });
  }
  bool contributed = false, stale_contributed = false;
  for (const auto& c : res.contributors) contributed |= c == cfg.id;
  for (const auto& c : res.stale_contributors) stale_contributed |= c == cfg.id;
  // Settled: older uploads, and this round's when applied or already acked. An unacked upload
  // of this round was late (the result went out before it arrived): kept, it may count next round.
  if (pending_round() < r || (pending_round() == r && (contributed || pending_acked))) pending_upload.reset();
  json line = {{"event", "round"},          {"round", r},
               {"param_hash", protocol::hex64(got)},
               {"contributed", contributed}, {"stale_contributed", stale_contributed},
               {"tokens", last_tokens},
               {"train_loss", last_train_loss},
               {"trained_hash", protocol::hex64(last_trained_hash)},
               {"bytes_up", bytes_up},      {"bytes_down", bytes_down},
               {"hash_mismatches", hash_mismatches}};
  metrics << line.dump() << "\n";
  metrics.flush();
  LH_LOG(Info, "site") << cfg.id << ": round " << r << " applied, θ hash " << protocol::hex64(got);
}

void SiteService::Impl::handle(const Message& m) {
  if (m.type == protocol::kRoundStart) return on_round_start(m);
  if (m.type == protocol::kRoundResult) return on_round_result(m);
  if (m.type == protocol::kWelcome) return on_welcome(m);
  if (m.type == protocol::kUploadAck) {
    const protocol::UploadAck a = protocol::parse_upload_ack(m.header);
    const int64_t r = a.round;
    const bool ours = pending_round() == r;
    if (!ours) {  // an ack applies only to the upload of the round it names
      LH_LOG(Debug, "site") << cfg.id << ": ignoring an ack for round " << r << " (no upload pending for it)";
      return;
    }
    if (a.status == protocol::kAccepted || a.status == protocol::kDuplicate) {
      pending_acked = true;
      if (r < round) {  // its round's result came first: counted in a later round (stale)
        LH_LOG(Info, "site") << cfg.id << ": late round " << r << " upload accepted: " << protocol::printable(a.reason, 512);
        pending_upload.reset();
      } else {
        LH_LOG(Debug, "site") << cfg.id << ": round " << r << " upload " << a.status;  // kept until the result
      }
    } else {
      LH_LOG(Warn, "site") << cfg.id << ": round " << r << " upload " << a.status << ": "
                           << protocol::printable(a.reason, 512);
      // Nothing of it was applied: its fragment's residual as before it (P = 1: all of it).
      restore_residual();
      pending_upload.reset();
    }
    return;
  }
  if (m.type == transport::kAckType) return;  // the channel's exactly-once ack of our upload
  if (m.type == protocol::kRunComplete) {
    const int64_t rounds = protocol::parse_run_complete(m.header);
    LH_LOG(Info, "site") << cfg.id << ": run complete after " << rounds << " rounds";
    // Remembered: a restart on this run dir (systemd, an operator) exits at once instead of
    // dialling a coordinator that has finished.
    const std::string marker = json{{"run_id", run_id}, {"rounds", rounds}}.dump() + "\n";
    write_file_atomic(run_dir / "run_complete.json", marker);
    done = true;
    return;
  }
  if (m.type == protocol::kRefuse)
    throw UserError("coordinator refused site '" + cfg.id + "': " +
                    protocol::printable(protocol::parse_refuse_reason(m.header), 1024));
  LH_LOG(Warn, "site") << cfg.id << ": ignoring unknown message '" << protocol::printable(m.type, 64) << "'";
}

void SiteService::Impl::set_theta(const Message& m) {
  const auto n = static_cast<int64_t>(manifest.total_elements());
  if (!on_device()) {
    theta.resize(static_cast<size_t>(n));
    transport::decode(m.payload, theta, manifest_hash);
    return;
  }
  torch::Tensor h = torch::empty({n}, torch::kFloat32);  // 4N of host scratch, at the welcome only
  transport::decode(m.payload, std::span<float>(h.data_ptr<float>(), static_cast<size_t>(n)), manifest_hash);
  theta_dev = h.to(*state_device);
}

void SiteService::Impl::add_to_theta(const Message& m) {
  if (!on_device()) {
    // θ += decode(payload), chunk by chunk: no 4N-byte update vector (bitwise the same sum).
    transport::decode_accumulate(m.payload, theta, 1.0f, manifest_hash);
    return;
  }
  // The update is decoded on the host (the codec's decoder), then added on the device: bitwise
  // decode_accumulate's θ + 1 * u. θ is untouched when the payload does not decode.
  const auto n = static_cast<int64_t>(manifest.total_elements());
  torch::Tensor u = torch::empty({n}, torch::kFloat32);
  transport::decode(m.payload, std::span<float>(u.data_ptr<float>(), static_cast<size_t>(n)), manifest_hash);
  theta_dev.add_(u.to(*state_device));
}

transport::Bytes SiteService::Impl::encode_upload(const transport::CodecOptions& o) {
  const inner::FlatParamRange local(*trainer->model());  // θ_local, read a chunk at a time
  if (!on_device()) {
    backup_residual(0, torch::from_blob(residual.data(), {static_cast<int64_t>(residual.size())}, torch::kFloat32));
    auto delta = [&](uint64_t begin, std::span<float> out) {
      local.read(begin, out);
      for (size_t k = 0; k < out.size(); ++k) out[k] = theta[begin + k] - out[k];  // Δ = θ_r − θ_local
    };
    return transport::encode_with_feedback_pulled(delta, residual, manifest, o);
  }
  backup_residual(0, residual_dev);
  auto delta_dev = [&](uint64_t begin, uint64_t n) {  // Δ = θ_r − θ_local, on the device
    return theta_dev.narrow(0, static_cast<int64_t>(begin), static_cast<int64_t>(n)) - local.slice(begin, n);
  };
  if (transport::wire::is_quantized(o.encoding))
    return inner::encode_with_feedback_on_device(delta_dev, residual_dev, manifest, o);
  // fp32/bf16/fp16: the host codec, with Δ and the residual brought over (4N of host scratch).
  torch::Tensor r = residual_dev.to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);
  std::span<float> rs(r.data_ptr<float>(), static_cast<size_t>(r.numel()));
  auto delta = [&](uint64_t begin, std::span<float> out) {
    const torch::Tensor d = delta_dev(begin, out.size()).to(torch::kCPU).contiguous();
    std::memcpy(out.data(), d.data_ptr<float>(), out.size_bytes());
  };
  transport::Bytes payload = transport::encode_with_feedback_pulled(delta, rs, manifest, o);
  residual_dev.copy_(r);
  return payload;
}

void SiteService::Impl::restore_residual() {
  if (!backup->valid()) return;
  const int f = backup->tag();
  if (fragments == 1) {  // straight into the residual (host or device), no 4N buffer
    backup->restore_into(on_device() ? residual_dev
                                     : torch::from_blob(residual.data(), {static_cast<int64_t>(residual.size())},
                                                        torch::kFloat32));
    return;
  }
  std::vector<float> part(layout->fragment(f).numel);
  backup->restore_into(torch::from_blob(part.data(), {static_cast<int64_t>(part.size())}, torch::kFloat32));
  layout->scatter(f, part, residual);
}

void SiteService::Impl::save_state() {
  if (!trainer) return;
  // One atomically written file: model, AdamW, data cursor (the trainer's), and this site's
  // own state: round, run, the error-feedback residual and the upload still pending (a restart
  // re-sends it under its idempotency key instead of training its round again).
  json extra = {{"round", round}, {"run_id", run_id}, {"site", cfg.id}};
  inner::CheckpointBlobs blobs;
  blobs["residual"] = on_device() ? residual_dev  // copied to the host by the writer
                                  : torch::from_blob(residual.data(), {static_cast<int64_t>(residual.size())},
                                                     torch::kFloat32);
  if (pending_upload) {
    extra["pending_upload"] = {{"type", pending_upload->type}, {"header", pending_upload->header},
                               {"acked", pending_acked}};
    blobs["pending_upload"] = torch::from_blob(const_cast<std::byte*>(pending_upload->payload.data()),
                                               {static_cast<int64_t>(pending_upload->payload.size())}, torch::kUInt8);
  }
  auto p = inner::checkpoint_path(run_dir, trainer->steps_done());
  trainer->save_checkpoint(p, extra, blobs);
  inner::prune_checkpoints(run_dir, 2);
  steps_unsaved = 0;
}

void SiteService::Impl::load_state(const fs::path& p) {
  inner::CheckpointBlobs blobs = {{"residual", {}}, {"pending_upload", {}}};
  const inner::CheckpointMeta meta = trainer->load_checkpoint(p, &blobs);
  const size_t n = manifest.total_elements();
  if (const torch::Tensor& r = blobs["residual"]; r.defined()) {
    if (r.numel() != static_cast<int64_t>(n) || r.scalar_type() != torch::kFloat32)
      throw DataError(p.string() + ": residual of " + std::to_string(r.numel()) + " values, the model has " +
                      std::to_string(n) + " (a checkpoint of another model?)");
    if (on_device())
      residual_dev.copy_(r.reshape({-1}));
    else
      std::memcpy(residual.data(), r.contiguous().data_ptr<float>(), n * sizeof(float));
  } else if (fs::path rp = run_dir / "residual.bin"; fs::exists(rp)) {  // written by older versions
    std::vector<float> v = load_floats(rp, n);
    if (on_device())
      residual_dev.copy_(torch::from_blob(v.data(), {static_cast<int64_t>(n)}, torch::kFloat32));
    else
      residual = std::move(v);
  }
  const json& pu = meta.extra.value("pending_upload", json());
  if (const torch::Tensor& b = blobs["pending_upload"]; b.defined() && pu.is_object()) {
    Message m;
    m.type = pu.value("type", std::string(protocol::kUpload));
    m.header = pu.value("header", json::object());
    const torch::Tensor bytes = b.contiguous();
    m.payload.resize(static_cast<size_t>(bytes.numel()));
    std::memcpy(m.payload.data(), bytes.data_ptr<uint8_t>(), m.payload.size());
    pending_upload = std::make_shared<const Message>(std::move(m));
    pending_acked = pu.value("acked", false);
    pending_conn = -1;  // sent on a connection before the restart: re-sent once if still unsettled
    LH_LOG(Info, "site") << cfg.id << ": round " << pending_round() << " upload pending from before the restart ("
                         << pending_upload->payload.size() << " bytes)";
  }
  LH_LOG(Info, "site") << cfg.id << ": resumed from " << p.string() << " (step " << meta.step << ", last round "
                       << meta.extra.value("round", int64_t{-1}) << ")";
}

SiteService::SiteService(SiteConfig cfg, fs::path run_dir, FollowerLink* followers)
    : impl_(std::make_unique<Impl>()) {
  impl_->followers = followers;
  impl_->cfg = std::move(cfg);
  impl_->run_dir = std::move(run_dir);
  impl_->backup.emplace(impl_->run_dir / "residual_backup.bin");
}
SiteService::~SiteService() = default;
void SiteService::request_stop() { g_stop.store(true); }

int SiteService::run() {
  Impl& s = *impl_;
  fs::create_directories(s.run_dir);
  if (const fs::path marker = s.run_dir / "run_complete.json"; fs::exists(marker)) {
    LH_LOG(Info, "site") << s.cfg.id << ": run dir " << s.run_dir.string() << " holds a completed run ("
                         << marker.string() << "): nothing to do; remove that file or use a fresh run dir to join a new run";
    return 0;
  }
  write_file_atomic(s.run_dir / "site.toml", s.cfg.effective_toml);
  s.metrics.open(s.run_dir / "metrics.jsonl", std::ios::app);
  if (s.cfg.link.enabled()) {
    LH_LOG(Warn, "site") << s.cfg.id << ": emulating a WAN link (testing aid, [link]): "
                         << s.cfg.link.emulate_mbps << " Mbit/s each way (0 = unpaced), round trip +"
                         << s.cfg.link.emulate_rtt_ms << " ms";
  }
  while (!g_stop.load() && !s.done) {
    if (!s.client) {
      s.connect_and_join();
      continue;
    }
    std::optional<Message> m;
    try {
      m = s.client->receive(Ms(200));
    } catch (const transport::ChannelError& e) {
      LH_LOG(Warn, "site") << s.cfg.id << ": connection lost: " << e.what();
      s.client.reset();
      continue;
    }
    if (!m) {
      // Closed and drained: what arrived before the close (often the last round's result and
      // run_complete, just before the coordinator exits) has been handled; now rejoin.
      if (!s.client->connected()) s.client.reset();
      continue;
    }
    try {
      s.handle(*m);
    } catch (const protocol::ProtocolError& e) {
      LH_LOG(Error, "site") << s.cfg.id << ": bad message from the coordinator: " << e.what();
      s.client.reset();
    } catch (const transport::DecodeError& e) {
      LH_LOG(Error, "site") << s.cfg.id << ": undecodable payload: " << e.what();
      s.resync(e.what());
    } catch (const transport::ChannelError& e) {
      LH_LOG(Warn, "site") << s.cfg.id << ": connection lost: " << e.what();
      s.client.reset();
    } catch (const UserError&) {
      throw;  // a refusal or a configuration mistake: exit with its message
    } catch (const std::exception& e) {
      // Anything else a hostile or broken coordinator reply can trigger: nothing of it was
      // applied (checkpoints are written only after a successful round step), so drop the
      // connection and rejoin (the welcome brings θ again).
      LH_LOG(Error, "site") << s.cfg.id << ": cannot use the coordinator's '" << protocol::printable(m->type, 64)
                            << "': " << e.what() << ": reconnecting";
      s.client.reset();
    }
  }
  if (s.trainer && s.steps_unsaved == 0) {
    s.save_state();
  } else if (s.trainer) {
    // Stopped mid-round (or with overlap steps not yet uploaded): the checkpoint of the last
    // upload stays the newest, so a restart resumes at its step and data cursor and trains the
    // round again from there, as the followers do (they save at the same points).
    const auto last = inner::latest_checkpoint(s.run_dir);
    LH_LOG(Info, "site") << s.cfg.id << ": discarding the " << s.steps_unsaved << " inner step(s) trained since "
                         << (last ? "the last checkpoint (step " + std::to_string(inner::read_checkpoint_meta(*last).step) + ")"
                                  : std::string("the start (no checkpoint yet)"))
                         << "; a restart resumes from there";
  }
  if (s.followers) {  // the other ranks end with θ (the checkpoint above keeps the trained state)
    if (s.trainer && s.have_theta()) s.theta_to_params();
    s.followers->finish(s.done ? "run complete" : "stopped", false, s.trainer ? s.trainer.get() : nullptr,
                        s.have_theta() ? s.theta_hash() : param_hash(s.theta));
  }
  if (s.client) s.client->close();
  if (s.have_theta()) {  // the θ this site ends with: scripts and tests compare it across replicas
    s.metrics << json{{"event", "final"}, {"round", s.round}, {"done", s.done},
                      {"param_hash", protocol::hex64(s.theta_hash())}}.dump()
              << "\n";
    s.metrics.flush();
  }
  if (s.done) {
    LH_LOG(Info, "site") << s.cfg.id << ": done at round " << s.round;
  } else if (s.run_id.empty()) {
    std::string why;
    if (s.unreachable_since)
      why = " (the coordinator was unreachable for " +
            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                             *s.unreachable_since)
                               .count()) +
            " s)";
    LH_LOG(Info, "site") << s.cfg.id << ": stopped before joining a run" << why;
  } else {
    LH_LOG(Info, "site") << s.cfg.id << ": stopped at round " << s.round << " of run " << s.run_id;
  }
  return 0;
}

}  // namespace longhaul::outer
