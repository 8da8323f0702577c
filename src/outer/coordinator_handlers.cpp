// The coordinator's protocol handlers: every message a site sends enters here, is validated by
// its schema (message_schema.h) and only then touches the registry or the round. A peer's
// mistake closes that peer's connection with the reason (logged, counted per site and reason);
// an unexpected exception while handling one event does the same as an internal error. Nothing a
// peer sends ends the process.
#include <chrono>

#include "common/log.h"
#include "outer/coordinator_impl.h"
#include "outer/param_hash.h"
#include "outer/wire_bytes.h"
#include "transport/codec.h"

namespace longhaul::outer {

using json = nlohmann::json;
using transport::Connection;
using transport::Message;

namespace {
// Upload weights are token counts; an upload may not claim more than its round's inner steps
// can produce with the site's declared batch (tokens per step) — see README "Trust model".
double max_tokens(const protocol::SiteDeclaration& d, int64_t block_size, int64_t inner_steps) {
  return static_cast<double>(d.tokens_per_step(block_size)) * static_cast<double>(inner_steps);
}
}  // namespace

void Coordinator::Impl::send(const std::string& site, Message m) {
  SiteEntry* s = sites.find(site);
  if (!s || !s->conn) return;
  s->bytes_down += transport::payload_size(m);
  m.header["run_id"] = run_id;
  m.header["site"] = site;
  if (!m.header.contains("fragment")) m.header["fragment"] = 0;
  try {
    s->conn->send(std::move(m));
  } catch (const std::exception& e) {
    LH_LOG(Warn, "coordinator") << "send to " << site << " failed: " << e.what();
  }
}

uint64_t Coordinator::Impl::broadcast(std::shared_ptr<const Message> m) {
  uint64_t bytes = 0;
  for (auto& [id, s] : sites) {
    if (!s.welcomed || !s.conn) continue;
    s.bytes_down += m->payload.size();
    s.state = "joined";
    bytes += m->payload.size();
    try {
      s.conn->send_shared(m);
    } catch (const std::exception& e) {
      LH_LOG(Warn, "coordinator") << "send to " << id << " failed: " << e.what();
    }
  }
  return bytes;
}

void Coordinator::Impl::protocol_error(const std::shared_ptr<Connection>& c, const std::string& site,
                                       const std::string& what, const std::string& label) {
  const std::string who = site.empty() ? c->peer_id() : site;
  LH_LOG(Warn, "coordinator") << "peer " << protocol::printable(who) << " (" << c->peer_address()
                              << "): protocol error: " << protocol::printable(what, 512)
                              << ": closing the connection";
  ++protocol_errors_total;
  ++protocol_errors_by[protocol::printable(who, 64) + "\t" + label.substr(0, 64)];
  if (SiteEntry* s = sites.find(who)) {
    ++s->protocol_errors;
    s->last_refusal = protocol::printable(what, 512);
  }
  snapshot_dirty = true;
  c->close(what.substr(0, 120));
}

void Coordinator::Impl::handle(ChannelEvent& e) {
  const auto& c = e.conn;
  if (e.kind == ChannelEvent::kOpen) {
    LH_LOG(Info, "coordinator") << "connection from " << protocol::printable(c->peer_id()) << " ("
                                << c->peer_address() << ")";
    return;
  }
  if (e.kind == ChannelEvent::kClose) {
    std::string id = sites.id_of(c);
    if (!id.empty()) {
      sites.disconnect(id);
      snapshot_dirty = true;
      LH_LOG(Warn, "coordinator") << "site " << id << " disconnected: " << protocol::printable(e.reason);
    }
    return;
  }
  Message& m = e.msg;  // on_upload may keep the payload of a held late upload
  std::string id = sites.id_of(c);
  try {
    if (SiteEntry* s = sites.find(id)) s->last_seen = SteadyClock::now();
    if (m.type == protocol::kHello) return on_hello(c, m);
    if (id.empty() || !sites.at(id).welcomed)
      throw protocol::ProtocolError("message '" + protocol::printable(m.type, 64) + "' before hello",
                                    "before_hello");
    const auto rid = m.header.find("run_id");
    if (rid == m.header.end() || !rid->is_string() || rid->get_ref<const std::string&>() != run_id)
      throw protocol::ProtocolError("message '" + protocol::printable(m.type, 64) + "' is not for run '" +
                                        run_id + "'",
                                    "wrong_run");
    if (m.type == protocol::kUpload) return on_upload(id, m);
    if (m.type == protocol::kResync) return on_resync(id, m);
    throw protocol::ProtocolError("unknown message type '" + protocol::printable(m.type, 64) + "'",
                                  "unknown_type");
  } catch (const protocol::ProtocolError& err) {
    protocol_error(c, id, err.what(), err.label());
  } catch (const JournalError&) {
    throw;  // the coordinator's own disk: not this connection's fault, and the run cannot go on
  } catch (const std::exception& err) {
    ++internal_errors;
    LH_LOG(Error, "coordinator") << "internal error while handling '" << protocol::printable(m.type, 64)
                                 << "' from " << protocol::printable(c->peer_id()) << ": " << err.what()
                                 << ": closing that connection, the run goes on";
    c->close("internal error");
  }
}

void Coordinator::Impl::on_hello(const std::shared_ptr<Connection>& c, const Message& m) {
  auto refuse = [&](const std::string& why) {
    LH_LOG(Warn, "coordinator") << "refusing " << protocol::printable(c->peer_id()) << ": " << why;
    try {
      // The site exits on it; a peer that lingers is closed by its next message (not joined)
      // or by the idle timeout. (Closing here could drop the refusal before it is written.)
      c->send(Message{protocol::kRefuse, {{"reason", why}}, {}});
    } catch (const std::exception&) {
    }
  };
  // The version first: an older site gets a clear refusal, not a schema error on new fields.
  if (auto v = m.header.find("protocol"); v != m.header.end() && v->is_number_integer() &&
                                          v->get<int64_t>() != protocol::kVersion)
    return refuse("protocol version " + std::to_string(v->get<int64_t>()) + ", coordinator speaks " +
                  std::to_string(protocol::kVersion) + ": run the same longhaul version everywhere");
  const protocol::Hello h = protocol::parse_hello(m.header);
  if (h.site != c->peer_id())
    return refuse("hello says site '" + h.site + "' but the certificate is for '" +
                  protocol::printable(c->peer_id()) + "'");
  if (h.manifest_hash != 0 && h.manifest_hash != manifest_hash)
    return refuse("model fingerprint " + protocol::hex64(h.manifest_hash) + " differs from the coordinator's " +
                  protocol::hex64(manifest_hash) +
                  " (the site's checkpoint is for another model: give it a fresh run dir)");
  const int64_t tokens_per_step = h.decl.tokens_per_step(cfg.model.block_size);
  if (tokens_per_step > cfg.max_tokens_per_step)
    return refuse("site declares " + std::to_string(tokens_per_step) +
                  " tokens per inner step (train.batch_size x train.grad_accum x model.block_size), over "
                  "coordinator.max_tokens_per_step = " + std::to_string(cfg.max_tokens_per_step));
  // Settings that must agree across sites, or training silently skews: one data layout, and
  // every shard trained by one site only.
  for (const auto& [other, e] : sites) {
    if (other == h.site || !e.decl) continue;
    const auto& d = *e.decl;
    if (d.num_shards != h.decl.num_shards || d.val_fraction != h.decl.val_fraction)
      return refuse("data layout disagrees with site '" + other + "': data.num_shards " +
                    std::to_string(h.decl.num_shards) + " vs " + std::to_string(d.num_shards) +
                    ", data.val_fraction " + std::to_string(h.decl.val_fraction) + " vs " +
                    std::to_string(d.val_fraction) + " (every site must split the corpus the same way)");
    if (d.shard_index == h.decl.shard_index)
      return refuse("data.shard_index " + std::to_string(h.decl.shard_index) + " is already trained by site '" +
                    other + "': give each site its own shard");
  }
  if (!sites.take_full_theta(h.site, SteadyClock::now())) {
    // Transient, not a refusal: the site retries with backoff and gets in once under the limit.
    const std::string why = "too many joins/resyncs (each costs a full θ): at most " +
                            std::to_string(cfg.full_theta_per_window) + " per " +
                            std::to_string(cfg.full_theta_window_s) + " s; retry later";
    LH_LOG(Warn, "coordinator") << "site " << h.site << ": " << why;
    sites.at(h.site).last_refusal = why;
    c->close(why.substr(0, 120));
    return;
  }
  SiteEntry& s = sites.at(h.site);
  if (s.conn && s.conn != c) {
    LH_LOG(Warn, "coordinator") << "site " << h.site << " reconnected: dropping its old connection";
    s.conn->close("replaced by a new connection");
  }
  sites.attach(h.site, c);
  s.welcomed = true;
  s.state = "joined";
  s.decl = h.decl;
  s.address = c->peer_address();
  snapshot_dirty = true;
  LH_LOG(Info, "coordinator") << "site " << h.site << " joined at round " << next_round << " ("
                              << tokens_per_step << " tokens/step, shard "
                              << h.decl.shard_index << "/" << h.decl.num_shards << ")";
  send_welcome(h.site);
  if (next_round >= cfg.rounds) {  // a late joiner after the last round (coordinator lingering)
    send(h.site, Message{protocol::kRunComplete, {{"rounds", next_round}}, {}});
    s.told_complete = true;
    return;
  }
  if (round.is_open()) {
    round.add_participant(h.site);
    send_round_start(h.site);
  }
}

bool Coordinator::Impl::send_welcome(const std::string& site) {
  transport::CodecOptions o;
  o.encoding = transport::Encoding::kFp32;
  Message w;
  w.type = protocol::kWelcome;
  w.header = {{"protocol", protocol::kVersion},
              {"round", next_round},
              {"model", cfg.model.to_json()},
              {"manifest_hash", protocol::hex64(manifest_hash)},
              {"param_hash", protocol::hex64(theta_pub_hash)}};
  if (cfg.streaming.streaming()) {  // the fixed schedule every site follows (issue #11)
    w.header["fragments"] = layout.size();
    w.header["overlap_steps"] = cfg.streaming.overlap_steps;
    w.header["merge_alpha"] = cfg.streaming.merge_alpha;
    w.header["layout_hash"] = protocol::hex64(layout.hash());
  }
  // θ is encoded once for every welcome queued at the same θ (K sites joining at once cost one
  // 4N buffer, not K); held weakly, it is freed when the last of them has been written.
  std::shared_ptr<const transport::Bytes> theta = welcome_theta.lock();
  if (!theta || welcome_theta_hash != theta_pub_hash) {
    theta = std::make_shared<const transport::Bytes>(transport::encode(theta_pub, manifest, o));
    welcome_theta = theta;
    welcome_theta_hash = theta_pub_hash;
  }
  w.shared_payload = std::move(theta);
  send(site, std::move(w));
  return true;
}

void Coordinator::Impl::send_round_start(const std::string& site) {
  Message m;
  m.type = protocol::kRoundStart;
  double left = std::chrono::duration<double>(round.deadline() - Clock::now()).count();
  m.header = {{"round", round.round()},
              {"fragment", round_fragment},
              {"inner_steps", inner_steps_of(site)},
              {"upload_encoding", policy.upload_encoding},
              {"download_encoding", policy.download_encoding},
              {"zstd_level", policy.zstd_level},
              // The inner lr schedule follows the run (Trainer::follow_schedule): this round
              // starts at schedule_steps and covers H steps in this site's H_k steps.
              {"schedule_step", schedule_steps},
              {"schedule_stride", static_cast<double>(round_h) / static_cast<double>(inner_steps_of(site))},
              {"deadline_s", std::max(0.0, left)},
              {"param_hash", protocol::hex64(theta_pub_hash)},
              // The sites evaluate θ_r as often as the coordinator does (eval.every_rounds; 0:
              // the last round's θ_r only).
              {"evaluate", cfg.eval.every_rounds > 0 ? round.round() % cfg.eval.every_rounds == 0
                                                     : round.round() == cfg.rounds - 1},
              // After a reconnect: whether this round already holds the site's upload (then it
              // waits for the result instead of training again or re-sending).
              {"have_upload", round.outcomes().count(site) > 0}};
  sites.at(site).state = "training";
  send(site, std::move(m));
}

void Coordinator::Impl::on_upload(const std::string& site, Message& m) {
  const protocol::Upload u = protocol::parse_upload(m.header);
  if (u.tag.site != site)
    throw protocol::ProtocolError("upload names site '" + u.tag.site + "' on " + site + "'s connection",
                                  "upload.site");
  if (u.tag.fragment >= layout.size())
    throw protocol::ProtocolError("upload for fragment " + std::to_string(u.tag.fragment) + " but this run has " +
                                      std::to_string(layout.size()) + " fragment(s)",
                                  "upload.fragment");
  SiteEntry& s = sites.at(site);
  s.bytes_up += transport::payload_size(m);
  snapshot_dirty = true;
  auto ack = [&](const char* status, const std::string& reason) {
    Message a{protocol::kUploadAck, {{"round", u.tag.round}, {"status", status}, {"reason", reason}}, {}};
    send(site, std::move(a));
  };
  UploadVerdict v = round.classify(site, u.tag.round);
  // Streaming: the next round exchanges another fragment, so a late upload cannot count there.
  if (v == UploadVerdict::kStale && (!(cfg.aggregation.stale_weight > 0) || layout.size() > 1))
    v = UploadVerdict::kLate;
  if (v == UploadVerdict::kFuture)
    throw protocol::ProtocolError("upload for round " + std::to_string(u.tag.round) + ", which is not open (next " +
                                      std::to_string(next_round) + ")",
                                  "upload.future_round");
  if (v == UploadVerdict::kDuplicate) return ack(protocol::kDuplicate, "already received");
  const bool stale = v == UploadVerdict::kStale;
  if (stale && !round.is_open()) {  // between rounds: counted when the next one opens
    LH_LOG(Info, "coordinator") << "round " << u.tag.round << ": late upload from " << site
                                << " held for the next round";
    s.bytes_up -= transport::payload_size(m);  // counted when handled
    Message held{m.type, m.header, std::move(m.payload)};  // the payload is moved, never copied
    held.spooled = std::move(m.spooled);                   // or stays on disk
    held.receive_s = m.receive_s;
    deferred_stale.insert_or_assign(site, std::move(held));
    return;
  }
  if (v != UploadVerdict::kAccept && !stale) {
    LH_LOG(Warn, "coordinator") << "upload from " << site << " for round " << u.tag.round
                                << " dropped: " << to_string(v) << " (round " << round.round()
                                << (round.is_open() ? " open)" : " closed)");
    return ack(protocol::kLate, to_string(v));
  }
  const bool spooled = m.spooled != nullptr;
  const auto t_fold = Clock::now();  // the round tail starts here when this is its last upload
  const std::shared_ptr<const transport::SpooledPayload> spool_file = m.spooled;  // kept for the journal
  transport::load_payload(m);  // one upload in memory at a time (the others wait spooled)
  round_bytes_up += m.payload.size();
  uint64_t raw_bytes = m.payload.size();  // before zstd; an uninspectable payload counts as sent
  std::optional<std::string> why;
  double norm = std::nan("");
  // This site's H_k (sync.balance) in the round the upload is for.
  int64_t h = inner_steps_of(site);
  if (stale) {  // that round's plan; if forgotten (a restart), H: the most any site was given
    auto plan = recent_plans.find(u.tag.round);
    const bool known = plan != recent_plans.end() && plan->second.count(site);
    h = known ? plan->second.at(site) : policy.inner_steps;
  }
  // outer.stale_weight per round of staleness (1 for an upload on time).
  const double discount = stale ? std::pow(cfg.aggregation.stale_weight, static_cast<double>(round.staleness(site))) : 1.0;
  const double cap = s.decl ? max_tokens(*s.decl, cfg.model.block_size, h) : 0;
  if (u.tag.fragment != round_fragment)  // checked first: its payload has another length
    why = "upload for fragment " + std::to_string(u.tag.fragment) + ", round " + std::to_string(u.tag.round) +
          " exchanges fragment " + std::to_string(round_fragment);
  else try {
    const auto info = transport::inspect(m.payload, agg_elements());
    raw_bytes = raw_payload_bytes(info);
    if (transport::encoding_name(info.encoding) != policy.upload_encoding) {
      why = "encoding " + std::string(transport::encoding_name(info.encoding)) + ", the round asked for " +
            policy.upload_encoding;
    } else if (u.steps > h) {
      why = "upload reports " + std::to_string(u.steps) + " inner steps, the round asked for " +
            std::to_string(h);
    } else if (u.tokens > cap) {
      why = "upload claims " + std::to_string(static_cast<int64_t>(u.tokens)) +
            " tokens, more than its declared batch can train in " + std::to_string(h) +
            " inner steps (" + std::to_string(static_cast<int64_t>(cap)) + ")";
    } else {
      // Two passes over the payload, no decoded copy (issue 13 §1): judge its decoded norm,
      // then fold it into the aggregate. A stale upload (previous round's, arrived after it
      // closed) weighs less: outer.stale_weight.
      const uint64_t fhash = layout.manifest(round_fragment).hash();
      const transport::DecodedScan scan = transport::decode_scan(m.payload, agg_elements(), fhash);
      const double weight = u.tokens * discount;
      const double scanned = std::sqrt(scan.sum_squares);
      why = agg().admit(weight, u.steps, scanned, scan.first_non_finite, scan.non_finite_value);
      if (!why) {  // on disk before it counts: the round journal can redo the round
        norm = scanned;
        try {
          const std::string file =
              journal->keep_upload(round.round(), static_cast<int>(round_folds.size()), spool_file, m.payload);
          round_folds.push_back(
              {{"file", file}, {"site", site}, {"weight", weight}, {"steps", u.steps}, {"norm", norm}});
        } catch (const JournalError& e) {  // ends the run; the upload is not acknowledged
          throw JournalError("upload from " + site + " for round " + std::to_string(u.tag.round) + ": " + e.what() +
                             "; stopping: the coordinator's disk failed, not the site, whose upload stays with it "
                             "and is re-sent to the restarted coordinator");
        }
        agg().accept(weight, u.steps, norm, [&](std::span<float> out, float coef) {
          transport::decode_accumulate(m.payload, out, coef, fhash);  // decoded once already: cannot fail
        });
      }
    }
  } catch (const transport::DecodeError& e) {
    why = std::string("undecodable: ") + e.what();
  }
  round_bytes_up_raw += raw_bytes;
  if (stale) {
    round.record_stale(site, !why);
  } else {
    round.record(site, !why);
    s.state = "uploaded";
    s.last_round_uploaded = u.tag.round;
  }
  // The round's last upload starts its tail whether it was folded or refused.
  last_fold_s = std::chrono::duration<double>(Clock::now() - t_fold).count();
  note_site_report(s, u, m);
  s.report["inner_steps"] = h;
  if (stale) s.report["stale"] = true;
  if (why) {
    ++s.uploads_rejected;
    ++rejected_total;
    s.last_refusal = *why;
    LH_LOG(Warn, "coordinator") << "upload from " << site << " for round " << u.tag.round
                                << " REJECTED: " << *why;
    return ack(protocol::kRejected, *why);
  }
  ++s.uploads_accepted;
  if (u.timing.compute_s) {
    speeds.add_compute(site, u.steps, *u.timing.compute_s);
    if (!stale)
      speeds.add_overhead(site, std::chrono::duration<double>(Clock::now() - round_started).count() -
                                    *u.timing.compute_s);
  }
  speeds.add_upload(site, static_cast<double>(m.payload.size()), m.receive_s);
  if (u.timing.download_s && u.timing.download_bytes)
    speeds.add_download(site, *u.timing.download_bytes, *u.timing.download_s);
  if (stale) {
    const std::string note = "stale: counted in round " + std::to_string(round.round()) + " with weight x" +
                             std::to_string(discount);
    LH_LOG(Info, "coordinator") << "round " << u.tag.round << ": late upload from " << site << " " << note;
    return ack(protocol::kAccepted, note);
  }
  LH_LOG(Info, "coordinator") << "round " << u.tag.round << ": upload from " << site << " ("
                              << m.payload.size() << " bytes" << (spooled ? " via the spool" : "") << ", "
                              << u.tokens << " tokens, norm " << norm << ")";
  ack(protocol::kAccepted, "");
}

void Coordinator::Impl::note_site_report(SiteEntry& s, const protocol::Upload& u, const Message& m) {
  json report = {{"round", u.tag.round},
                 {"last_tokens", u.tokens},
                 {"last_steps", u.steps},
                 {"upload_s", m.receive_s},
                 {"upload_bytes", m.payload.size()}};
  if (u.train_loss) report["last_train_loss"] = *u.train_loss;
  if (u.eval_loss) {
    report["eval_loss"] = *u.eval_loss;
    report["eval_tokens"] = u.eval_tokens;
    report["eval_round"] = u.tag.round;
  }
  const protocol::SiteTiming& t = u.timing;
  if (t.compute_s) report["compute_s"] = *t.compute_s;
  if (t.wait_s) report["wait_s"] = *t.wait_s;
  if (t.download_s) report["download_s"] = *t.download_s;
  if (t.download_bytes) report["download_bytes"] = *t.download_bytes;
  if (t.cycle_s) report["cycle_s"] = *t.cycle_s;
  // The share of the site's cycle (upload to upload) spent in inner steps.
  if (t.compute_s && t.cycle_s && *t.cycle_s > 0) report["utilisation"] = std::min(1.0, *t.compute_s / *t.cycle_s);
  s.report = std::move(report);
}

void Coordinator::Impl::on_resync(const std::string& site, const Message& m) {
  const protocol::Resync r = protocol::parse_resync(m.header);
  SiteEntry& s = sites.at(site);
  ++s.resyncs;
  ++hash_resyncs;
  snapshot_dirty = true;
  if (!sites.take_full_theta(site, SteadyClock::now())) {
    s.last_refusal = "resync over the rate limit";
    throw protocol::ProtocolError("too many resyncs (each costs a full θ): at most " +
                                      std::to_string(cfg.full_theta_per_window) + " per " +
                                      std::to_string(cfg.full_theta_window_s) + " s",
                                  "resync.rate_limit");
  }
  LH_LOG(Warn, "coordinator") << "site " << site << " asks for a full resync: " << protocol::printable(r.reason);
  send_welcome(site);
  if (round.is_open()) send_round_start(site);
}

}  // namespace longhaul::outer
