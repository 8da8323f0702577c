// Checkpoint metadata of the coordinator: a fresh start (θ0 from the seeded model), a resume
// from <run_dir>/coordinator.ckpt, and the save after every round (coordinator_checkpoint.h has
// the file format and the atomic write).
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>

#include <torch/torch.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/log.h"
#include "inner/flat_params.h"
#include "inner/gpt.h"
#include "outer/coordinator_checkpoint.h"
#include "outer/coordinator_impl.h"
#include "outer/param_hash.h"
#include "outer/parallel_for.h"
#include "transport/codec.h"

namespace longhaul::outer {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
int64_t total_steps(const std::vector<int64_t>& by_fragment) {
  int64_t n = 0;
  for (int64_t s : by_fragment) n += s;
  return n;
}

std::string new_run_id() {
  std::random_device rd;
  std::ostringstream os;
  os << "run-" << std::hex << rd() << rd();
  return os.str();
}
}  // namespace

void Coordinator::Impl::set_published(std::vector<float> theta) {
  theta_pub = std::move(theta);
  theta_pub_hash = param_hash(theta_pub);
  theta_pub_norm = parallel_norm(theta_pub).norm;
  snapshot_dirty = true;
}

void Coordinator::Impl::init_state() {
  // Memory at a resume (issue 13 §1): the checkpoint's vectors (12N bytes) are read first and
  // each is freed as soon as it has been taken over, so the peak stays at 4 × 4N.
  fs::path ck = coordinator_checkpoint_path(run_dir);
  for (const fs::path& t : temp_files_of(ck)) {  // none is in flight yet: a crash left it (the checkpoint is intact)
    LH_LOG(Warn, "coordinator") << "removing " << t.string() << ": a checkpoint write interrupted by a crash";
    std::error_code ec;
    fs::remove(t, ec);
  }
  std::optional<CoordinatorState> st = load_coordinator_checkpoint(ck);
  std::vector<float> theta0;
  evaluator = std::make_unique<Evaluator>(cfg.model, cfg.data, cfg.eval.batches, cfg.eval.batch_size);
  {
    torch::manual_seed(cfg.seed);
    inner::Gpt model(cfg.model);
    manifest = inner::param_manifest(*model);
    if (!st) theta0 = inner::params_to_flat(*model);
    if (st && st->theta_published.size() != manifest.total_elements()) throw UserError(ck.string() + ": size mismatch");
    // The evaluator keeps this model, its parameters views of the θ that becomes θ_pub (the
    // vector's buffer moves with it): no second model, no copy (issue 13 §1).
    evaluator->adopt(std::move(model), st ? st->theta_published : theta0);
  }
  manifest_hash = manifest.hash();
  const int P = cfg.streaming.fragments;
  layout = FragmentLayout::strided(manifest, P);
  if (st && st->theta_master.size() != manifest.total_elements()) throw UserError(ck.string() + ": size mismatch");
  outer = std::make_unique<FragmentOuter>(cfg.outer, layout, st ? st->theta_master : theta0);
  if (P > 1) {
    LH_LOG(Info, "coordinator") << "streaming DiLoCo: " << layout.describe();
  }
  run_id = cfg.run_id.empty() ? new_run_id() : cfg.run_id;
  auto make_aggregators = [&] {
    for (int p = 0; p < P; ++p)
      aggs.push_back(std::make_unique<Aggregator>(static_cast<int64_t>(layout.fragment(p).numel), cfg.aggregation));
  };

  bool fresh = false;
  if (st) {
    const json& m = st->meta;
    if (m.value("manifest_hash", std::string()) != protocol::hex64(manifest_hash))
      throw UserError(ck.string() + ": checkpoint was written for another model (manifest " +
                      m.value("manifest_hash", std::string("?")) + ", config gives " +
                      protocol::hex64(manifest_hash) + "): use a fresh --run-dir");
    run_id = m.at("run_id").get<std::string>();
    if (!cfg.run_id.empty() && cfg.run_id != run_id)
      throw UserError(ck.string() + ": run id '" + run_id + "' differs from coordinator.run_id '" +
                      cfg.run_id + "'");
    if (const int ck_p = m.value("fragments", 1); ck_p != P)
      throw UserError(ck.string() + ": the run was started with sync.fragments = " + std::to_string(ck_p) +
                      " but the config gives " + std::to_string(P) +
                      ": sync.fragments is fixed for a run (set it back, or use a fresh --run-dir)");
    std::vector<float>().swap(st->theta_master);  // θ master is in the outer optimizer now (kept)
    outer->restore({}, st->momentum,
                   m.value("outer_steps_by_fragment", std::vector<int64_t>{m.value("outer_steps", int64_t{0})}));
    std::vector<float>().swap(st->momentum);
    set_published(std::move(st->theta_published));
    make_aggregators();
    restore_meta(m);
    LH_LOG(Info, "coordinator") << "resumed run " << run_id << " from " << ck.string()
                                << " at round " << next_round << " (θ hash "
                                << protocol::hex64(theta_pub_hash) << ")";
  } else {
    LH_LOG(Info, "coordinator") << "new run " << run_id << ": " << theta0.size()
                                << " parameters, manifest " << protocol::hex64(manifest_hash);
    set_published(std::move(theta0));
    make_aggregators();
    save_checkpoint();
    fresh = true;
  }
  journal = std::make_unique<RoundJournal>(run_dir / "journal");
  replay_journal();
  history.set_run(run_id, unix_now_s());
  if (!fresh) {  // one read of metrics.jsonl: the rounds before the restart, the run's start time
    history.load_jsonl(run_dir / "metrics.jsonl");
    recover_metrics_line();
  }
  metrics_file = std::make_unique<std::ofstream>(run_dir / "metrics.jsonl", std::ios::app);
  if (fresh) {
    json init = {{"event", "init"},
                 {"run_id", run_id},
                 {"param_hash", protocol::hex64(theta_pub_hash)},
                 {"parameters", theta_pub.size()},
                 {"time", unix_now_s()}};
    if (evaluator->enabled()) init["eval_loss"] = last_eval = evaluator->loss(theta_pub);
    *metrics_file << init.dump() << "\n";
    metrics_file->flush();
  }
  policy = configured = cfg.sync;
  watcher = std::make_unique<ConfigWatcher>(config_path, overrides, cfg.effective_toml, cfg.sync,
                                            AccessLists{cfg.allowed_sites, cfg.allowed_operators});
}

void Coordinator::Impl::recover_metrics_line() {
  // The checkpoint is written before the round's metrics line: a crash between the two leaves
  // round next_round−1 applied but unlisted. List it (from the checkpoint) so that every round
  // appears exactly once, with its θ hash.
  // The rounds listed are those history.load_jsonl just read from the file.
  const fs::path path = run_dir / "metrics.jsonl";
  if (history.last_round() >= next_round - 1 || next_round == 0) return;
  json line = {{"event", "round"},
               {"round", next_round - 1},
               {"recovered", true},
               {"param_hash", protocol::hex64(theta_pub_hash)}};
  std::ofstream out(path, std::ios::app);
  out << line.dump() << "\n";
  history.add_round(line);
  LH_LOG(Warn, "coordinator") << "round " << next_round - 1
                              << " was applied before the last stop but not listed in metrics.jsonl: listed now";
}

void Coordinator::Impl::restore_meta(const json& m) {
  next_round = m.at("next_round").get<int64_t>();
  resumed_at_round = next_round;
  schedule_steps = m.value("schedule_steps", next_round * cfg.sync.inner_steps);  // older checkpoints
  if (layout.size() == 1) {
    aggs[0]->set_previous_norms(m.value("norms", std::vector<double>{}));
  } else {
    const auto norms = m.value("norms_by_fragment", std::vector<std::vector<double>>{});
    for (int p = 0; p < layout.size() && p < static_cast<int>(norms.size()); ++p) aggs[p]->set_previous_norms(norms[p]);
  }
  round.resume(next_round, m.value("stale_eligible", std::map<std::string, int64_t>{}));
  rejected_total = m.value("rejected_total", int64_t{0});
  hash_resyncs = m.value("hash_resyncs", int64_t{0});
  sites.restore(m.value("sites", json::object()));
}

void Coordinator::Impl::replay_journal() {
  const int64_t r = next_round;
  if (auto rec = journal->record(r)) {
    const fs::path file = journal->record_path(r);
    auto bad = [&](const std::string& why) {
      return DataError(file.string() + ": cannot redo round " + std::to_string(r) + ": " + why +
                       " (coordinator.ckpt holds the state before round " + std::to_string(r) +
                       "; the run dir is left as it is)");
    };
    try {
      const int f = rec->at("fragment").get<int>();
      if (f < 0 || f >= layout.size()) throw bad("fragment " + std::to_string(f) + " out of range");
      round_fragment = f;
      Aggregator& a = agg();
      a.begin_round(theta_pub_norm, 1);
      const uint64_t fhash = layout.manifest(f).hash();
      int folds = 0;
      for (const json& e : rec->at("folds")) {
        const transport::Bytes p = journal->load_upload(e.at("file").get<std::string>());
        a.accept(e.at("weight").get<double>(), e.at("steps").get<int64_t>(), e.at("norm").get<double>(),
                 [&](std::span<float> out, float coef) { transport::decode_accumulate(p, out, coef, fhash); });
        ++folds;
      }
      const std::span<float> buf = a.finish();
      if (rec->at("applied").get<bool>() != !buf.empty()) throw bad("the record's 'applied' disagrees with its folds");
      if (!buf.empty()) {
        transport::CodecOptions o;
        o.encoding = transport::parse_encoding(rec->at("encoding").get<std::string>());
        o.zstd_level = rec->at("zstd_level").get<int>();
        apply_round_update(f, buf, o);
      }
      const std::string want = rec->at("param_hash").get<std::string>();
      if (protocol::hex64(theta_pub_hash) != want)
        throw bad("redone, θ hash is " + protocol::hex64(theta_pub_hash) + " but the round published " + want);
      restore_meta(rec->at("meta"));
      save_checkpoint();
      LH_LOG(Warn, "coordinator") << "round " << r << " was published before the last stop but its checkpoint "
                                  << "was not written: redone from the journal (" << folds
                                  << " upload(s)), θ hash " << want << " as published";
    } catch (const json::exception& e) {
      throw bad(std::string("malformed record: ") + e.what());
    } catch (const transport::DecodeError& e) {
      throw bad(std::string("a journaled upload does not decode: ") + e.what());
    }
  }
  // Uploads of a round that never got its record: the sites re-send them (ready_to_open).
  journal->forget_from(next_round);
  journal->forget_through(next_round - 1);
}

json Coordinator::Impl::checkpoint_meta() {
  json meta = {{"run_id", run_id},
               {"next_round", next_round},
               {"outer_steps", total_steps(outer->steps_taken())},
               {"outer_steps_by_fragment", outer->steps_taken()},
               {"fragments", layout.size()},
               {"schedule_steps", schedule_steps},
               {"outer_optimizer", to_string(cfg.outer.kind)},
               {"manifest_hash", protocol::hex64(manifest_hash)},
               {"param_hash", protocol::hex64(theta_pub_hash)},
               {"model", cfg.model.to_json()},
               {"norms", aggs[0]->previous_norms()},
               {"stale_eligible", round.stale_eligible()},
               {"rejected_total", rejected_total},
               {"hash_resyncs", hash_resyncs},
               {"sites", sites.counters_json()}};
  if (aggs.size() > 1) {
    json norms = json::array();
    for (const auto& a : aggs) norms.push_back(a->previous_norms());
    meta["norms_by_fragment"] = std::move(norms);
  }
  return meta;
}

CoordinatorStateView Coordinator::Impl::checkpoint_view() {
  CoordinatorStateView st;
  st.theta_master = outer->params();
  st.theta_published = theta_pub;
  st.momentum = outer->momentum_view();
  return st;
}

void Coordinator::Impl::await_checkpoint() {
  const auto warn = [this](double waited_s) {
    LH_LOG(Warn, "coordinator") << "the checkpoint write to " << checkpoint_writer.path().string() << " has taken "
                                << static_cast<int64_t>(waited_s) << " s (is the disk stalled?); the round waits for it, up to coordinator.checkpoint_timeout_s = "
                                << cfg.checkpoint_timeout_s << " s";
  };
  if (checkpoint_writer.wait_for(cfg.checkpoint_timeout_s, warn)) return;
  LH_LOG(Error, "coordinator") << "the checkpoint write to " << checkpoint_writer.path().string()
                               << " did not finish within coordinator.checkpoint_timeout_s = " << cfg.checkpoint_timeout_s
                               << " s: exiting with code " << kExitCheckpointStalled
                               << ". Nothing published is lost: the previous checkpoint and the round journal in "
                               << journal->dir().string() << " redo it when the coordinator is restarted on the same --run-dir";
  std::fflush(nullptr);
  std::_Exit(kExitCheckpointStalled);  // not exit(): the stuck writer thread reads θ, which exit() would free
}

void Coordinator::Impl::save_checkpoint() {
  await_checkpoint();
  CoordinatorStateView st = checkpoint_view();
  st.meta = checkpoint_meta();
  save_coordinator_checkpoint(coordinator_checkpoint_path(run_dir), st);
}

}  // namespace longhaul::outer
