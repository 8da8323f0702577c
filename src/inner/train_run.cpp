#include "inner/train_run.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/log.h"
#include "inner/checkpoint.h"
#include "inner/metrics_writer.h"
#include "inner/progress.h"
#include "inner/safetensors_io.h"
#include "inner/trainer.h"

namespace longhaul::inner {

namespace fs = std::filesystem;

namespace {

std::string steps_text(const std::vector<int64_t>& steps) {
  std::string s;
  for (size_t r = 0; r < steps.size(); ++r) s += (r ? ", " : "") + std::to_string(steps[r]);
  return s;
}

// A multi-process --resume: every rank continues from the same step, the newest one every
// rank has a checkpoint of (a rank stopped between the ranks' writes of one step leaves the
// others a checkpoint ahead; train.keep_checkpoints >= 2 keeps the one before). UserError on
// every rank when some rank has no checkpoint of that step.
std::optional<fs::path> agree_on_checkpoint(SiteProcessGroup& group, const fs::path& dir,
                                            const std::optional<fs::path>& latest) {
  const int64_t mine = latest ? read_checkpoint_meta(*latest).step : 0;
  const auto newest = group.all_gather(mine);
  const int64_t target = *std::min_element(newest.begin(), newest.end());
  // target 0: some rank has none — a fresh start when no rank has one, else an error.
  const bool ok = target == 0 ? mine == 0 : fs::exists(checkpoint_path(dir, target));
  const auto ok_all = group.all_gather(static_cast<int64_t>(ok));
  std::string culprits;
  for (size_t r = 0; r < ok_all.size(); ++r)
    if (target == 0 ? newest[r] == 0 : !ok_all[r])
      culprits += (culprits.empty() ? "" : ", ") + std::to_string(r);
  const std::string tail =
      " (the ranks' newest checkpoints, in rank order: steps " + steps_text(newest) +
      "); restart every rank with the run dir it wrote (rank R > 0: <run-dir>/rank-R)";
  if (target == 0 && *std::max_element(newest.begin(), newest.end()) > 0)
    throw UserError("--resume: rank(s) " + culprits + " have no checkpoint" + tail);
  if (std::find(ok_all.begin(), ok_all.end(), 0) != ok_all.end())
    throw UserError("--resume: rank(s) " + culprits + " have no checkpoint of step " +
                    std::to_string(target) + ", the newest step every rank reached" + tail);
  if (target == mine) return latest;
  LH_LOG(Warn, "train") << "--resume: continuing from step " << target
                        << ", the newest step every rank has a "
                        << "checkpoint of (ranks' newest: " << steps_text(newest) << ")";
  return checkpoint_path(dir, target);
}

}  // namespace

RunSummary run_training(const TrainConfig& cfg, const RunOptions& opts) {
  const fs::path dir = opts.group.world_size > 1 && opts.group.rank > 0
                           ? opts.run_dir / ("rank-" + std::to_string(opts.group.rank))
                           : opts.run_dir;
  const auto& loop = cfg.train;
  auto latest = latest_checkpoint(dir);
  if (latest && !opts.resume)
    throw UserError(dir.string() + ": run dir already holds checkpoints (" + latest->string() +
                    "); pass --resume to continue it or choose another --run-dir");
  fs::create_directories(dir);
  write_file_atomic(dir / "config.effective.toml", opts.effective_toml);

  auto corpus = std::make_shared<const Corpus>(load_corpus(cfg.data));
  LH_LOG(Info, "train") << "corpus " << cfg.data.path << ": " << corpus->files.size()
                        << " file(s), " << corpus->train.size() << " training tokens (shard "
                        << cfg.data.shard_index << " of " << cfg.data.num_shards << "), "
                        << corpus->val.size() << " validation tokens";

  std::unique_ptr<SiteProcessGroup> group;
  if (opts.group.world_size > 1) {
    ProcessGroupOptions po = opts.group;
    po.backend = cfg.train.process_group_backend;
    group = SiteProcessGroup::connect(po, cfg.train.device_names());
    if (opts.resume) latest = agree_on_checkpoint(*group, dir, latest);
  }
  Trainer trainer(cfg, corpus, group.get());
  RunSummary summary;
  double elapsed_before = 0;  // wall seconds of the run before this process (resume)
  if (opts.resume) {
    if (latest) {
      elapsed_before = trainer.load_checkpoint(*latest).extra.value("elapsed_s", 0.0);
      summary.resumed_from = trainer.steps_done();
      LH_LOG(Info, "train") << "resumed from " << latest->string() << " at step " << trainer.steps_done();
    } else {
      LH_LOG(Warn, "train") << "--resume: no checkpoint in " << dir.string() << ", starting fresh";
    }
  }
  if (group) trainer.broadcast_from_rank0();  // every rank starts from rank 0's parameters
  LH_LOG(Info, "train") << "model " << trainer.model()->num_parameters() << " parameters on "
                        << trainer.device().str() << ", " << trainer.tokens_per_step()
                        << " tokens/step, " << at::get_num_threads() << " intra-op threads";

  if (summary.resumed_from == 0) fs::remove(dir / "metrics.jsonl");
  MetricsWriter metrics(dir / "metrics.jsonl", summary.resumed_from > 0 ? summary.resumed_from : -1);
  Progress progress(loop.steps, trainer.steps_done(), loop.log_every);

  // Share of the loop's time spent outside LibTorch calls (sampling, logging, bookkeeping),
  // evaluations and checkpoints excluded: the framework overhead scripts/bench-inner reports.
  double loop_seconds = 0, torch_seconds = 0;
  auto cpu_seconds = [] {  // this process's user + system CPU time
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  double loop_cpu_seconds = 0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {  // wall seconds of the whole run, evaluations and checkpoints included
    return elapsed_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  int64_t tokens_at_log = trainer.tokens_trained();
  double seconds_at_log = elapsed();
  while (trainer.steps_done() < loop.steps) {
    const auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = cpu_seconds();
    const StepResult r = trainer.step();
    torch_seconds += r.seconds - r.data_seconds;
    if (!std::isfinite(r.loss))
      throw std::runtime_error("training loss is " + std::to_string(r.loss) + " at step " +
                               std::to_string(r.step) + "; lower optim.lr or check the data");
    const bool last = r.step == loop.steps;
    const double now_s = elapsed();
    const double rate = static_cast<double>(r.tokens - tokens_at_log) / std::max(1e-9, now_s - seconds_at_log);
    summary.last_loss = r.loss;
    if (r.step % loop.log_every == 0 || last) {
      StepMetrics m{r.step, r.loss, r.lr, r.tokens, rate, now_s, r.devices};
      metrics.step(m);
      tokens_at_log = r.tokens;
      seconds_at_log = now_s;
    }
    progress.step(r.step, r.loss, rate);
    loop_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    loop_cpu_seconds += cpu_seconds() - cpu0;
    if ((loop.eval_every > 0 && r.step % loop.eval_every == 0) || last) {
      summary.val_loss = trainer.evaluate();
      metrics.eval(r.step, summary.val_loss);
      progress.eval(r.step, summary.val_loss);
    }
    if ((loop.checkpoint_every > 0 && r.step % loop.checkpoint_every == 0) || last) {
      trainer.save_checkpoint(checkpoint_path(dir, r.step), {{"elapsed_s", elapsed()}});
      prune_checkpoints(dir, loop.keep_checkpoints);
    }
  }
  if (loop_seconds > 0) {
    LH_LOG(Info, "train") << "loop time outside LibTorch calls: "
                          << 100.0 * (1.0 - torch_seconds / loop_seconds) << "% of "
                          << loop_seconds << " s; cores busy during steps: "
                          << loop_cpu_seconds / loop_seconds << " of " << at::get_num_threads()
                          << " intra-op threads";
  }
  export_model(trainer.model(), dir);
  summary.steps = trainer.steps_done();
  progress.finish(summary.steps, elapsed());
  return summary;
}

}  // namespace longhaul::inner
