#include "outer/site_follower.h"

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <torch/torch.h>

#include "common/error.h"
#include "common/log.h"
#include "inner/checkpoint.h"
#include "inner/corpus.h"
#include "inner/flat_params.h"
#include "inner/flat_range.h"
#include "inner/process_group.h"
#include "inner/trainer.h"
#include "outer/param_hash.h"
#include "outer/protocol.h"

namespace longhaul::outer {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
std::atomic<bool> g_follower_stop{false};

std::string boundary_key(int64_t k) { return "site/boundary/" + std::to_string(k); }
std::string ready_key(int rank) { return "site/ready/" + std::to_string(rank); }
std::string seconds_text(double s) {
  std::ostringstream os;
  os << s;
  return os.str();
}
// The go flag of one inner step: rank 0's value on every rank.
bool broadcast_go(inner::SiteProcessGroup& pg, bool go) {
  auto t = torch::full({1}, go ? int64_t{1} : int64_t{0},
                       torch::TensorOptions().dtype(torch::kInt64).device(pg.comm_device()));
  pg.broadcast(t, 0);
  return t.item<int64_t>() != 0;
}

// Streamed (inner::params_xxh64): no 4N-byte flat copy beside the model and AdamW state.
uint64_t model_hash(inner::Trainer& trainer) { return inner::params_xxh64(*trainer.model()); }
}  // namespace

FollowerLink::FollowerLink(inner::SiteProcessGroup& pg, std::chrono::duration<double> ready_timeout)
    : pg_(pg), ready_timeout_(ready_timeout) {
  LH_CHECK(ready_timeout_.count() > 0, "ready_timeout = ", ready_timeout_.count(), " s");
}

void FollowerLink::post(const json& header) { pg_.post(boundary_key(boundary_++), header.dump()); }

void FollowerLink::start_round(int64_t round, int64_t inner_steps, int64_t checkpoint_after, const json& model,
                               uint64_t theta_hash, inner::Trainer& trainer) {
  LH_CHECK(!finished_, "start_round after the followers were released");
  LH_CHECK(checkpoint_after >= 0 && checkpoint_after <= inner_steps, "checkpoint_after = ", checkpoint_after);
  post({{"round", round},
        {"inner_steps", inner_steps},
        {"checkpoint_after", checkpoint_after},
        {"step", trainer.steps_done()},
        {"schedule", {trainer.schedule_position(), trainer.schedule_stride()}},  // rank 0's lr schedule
        {"model", model},
        {"theta_hash", protocol::hex64(theta_hash)}});
  if (!ready_) {  // the first round: the followers build their model from the header
    const auto deadline =
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(ready_timeout_);
    for (int r = 1; r < pg_.world_size(); ++r) {
      std::optional<std::string> v;
      while (!(v = pg_.poll(ready_key(r)))) {
        if (std::chrono::steady_clock::now() > deadline)
          throw inner::RankError(
              "site process group: rank " + std::to_string(r) + " of " +
              std::to_string(pg_.world_size()) + " did not build its model within " +
              seconds_text(ready_timeout_.count()) +
              " s (site.follower_ready_timeout_s; loading its corpus may take longer)");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (*v != "ok")
        throw inner::RankError("site process group: rank " + std::to_string(r) + " of " +
                               std::to_string(pg_.world_size()) + " failed: " + *v);
    }
    ready_ = true;
  }
  trainer.broadcast_from_rank0();
}

bool FollowerLink::step_gate(bool go) {
  if (finished_) return go;
  broadcast_go(pg_, go);
  if (!go) finished_ = true;  // the followers leave on a 0
  return go;
}

void FollowerLink::finish(const std::string& reason, bool error, inner::Trainer* trainer, uint64_t theta_hash) {
  if (finished_) return;
  finished_ = true;
  if (!ready_) trainer = nullptr;  // the followers have no model yet: nothing to send
  json h = {{"stop", true}, {"reason", reason}, {"error", error}, {"theta", trainer != nullptr}};
  if (trainer) h["theta_hash"] = protocol::hex64(theta_hash);
  post(h);
  if (trainer) trainer->broadcast_from_rank0();
  LH_LOG(Info, "site") << "rank 0: told " << pg_.world_size() - 1 << " follower rank(s) to stop (" << reason << ")";
}

void request_follower_stop() { g_follower_stop.store(true); }

int run_site_follower(const SiteConfig& cfg, const fs::path& run_dir, inner::SiteProcessGroup& pg) {
  const std::string me = cfg.id + " rank " + std::to_string(pg.rank());
  const fs::path dir = run_dir / ("rank-" + std::to_string(pg.rank()));
  fs::create_directories(dir);
  std::ofstream metrics(dir / "metrics.jsonl", std::ios::app);
  std::shared_ptr<inner::Corpus> corpus;
  std::unique_ptr<inner::Trainer> trainer;
  LH_LOG(Info, "site") << me << ": following rank 0 (no coordinator connection)";

  for (int64_t k = 0;; ++k) {
    std::optional<std::string> text;
    while (!(text = pg.poll(boundary_key(k)))) {
      if (g_follower_stop.load()) {
        LH_LOG(Info, "site") << me << ": stopped while waiting for rank 0";
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const json h = json::parse(*text);
    if (h.value("stop", false)) {
      const std::string reason = h.value("reason", std::string("?"));
      if (h.value("error", false)) throw inner::RankError(me + ": rank 0 failed: " + reason);
      json line = {{"event", "stop"}, {"reason", reason}};
      if (h.value("theta", false) && trainer) {
        trainer->broadcast_from_rank0();
        line["param_hash"] = protocol::hex64(model_hash(*trainer));
        line["theta_hash"] = h.value("theta_hash", std::string());
      }
      metrics << line.dump() << "\n" << std::flush;
      LH_LOG(Info, "site") << me << ": rank 0 ended the run (" << reason << ")"
                           << (line.contains("param_hash") ? ", final θ hash " + line["param_hash"].get<std::string>()
                                                           : std::string());
      return 0;
    }
    const int64_t round = h.at("round"), H = h.at("inner_steps"), step = h.at("step");
    const int64_t save_after = h.value("checkpoint_after", H);
    if (save_after < 0 || save_after > H)
      throw inner::RankError(me + ": rank 0 asked for a checkpoint after step " + std::to_string(save_after) +
                             " of a " + std::to_string(H) + "-step round (versions of the ranks differ?)");
    if (!trainer) try {  // the first round: the coordinator's model, as rank 0 builds it
      inner::TrainConfig tc = cfg.train;
      tc.model = inner::GptConfig::from_json(h.at("model"));
      tc.data.block_size = tc.model.block_size;
      tc.data.vocab_size = tc.model.vocab_size;
      corpus = std::make_shared<inner::Corpus>(inner::load_corpus(tc.data));
      trainer = std::make_unique<inner::Trainer>(tc, corpus, &pg);
      std::optional<fs::path> p = inner::checkpoint_path(dir, step);
      if (!fs::exists(*p)) p = inner::latest_checkpoint(dir);
      if (p) {
        trainer->load_checkpoint(*p);
        LH_LOG(Info, "site") << me << ": resumed from " << p->string() << " (step " << trainer->steps_done() << ")";
      }
      pg.post(ready_key(pg.rank()), "ok");
    } catch (const std::exception& e) {
      pg.post(ready_key(pg.rank()), e.what());  // rank 0 fails with this rank's reason
      throw;
    }
    if (trainer->steps_done() != step)
      throw UserError(me + ": at optimizer step " + std::to_string(trainer->steps_done()) + " but rank 0 is at " +
                      std::to_string(step) + " (the ranks resumed from different checkpoints?); restart every "
                      "rank of the site from matching run dirs");
    if (const auto& sc = h.value("schedule", json::array()); sc.size() == 2 && sc[0].get<double>() >= 0)
      trainer->follow_schedule(sc[0].get<double>(), sc[1].get<double>());  // the same lr as rank 0
    trainer->broadcast_from_rank0();  // θ_round
    const std::string theta_hash = protocol::hex64(model_hash(*trainer));
    if (theta_hash != h.value("theta_hash", std::string()))
      throw inner::RankError(me + ": θ from rank 0 hashes to " + theta_hash + ", rank 0 announced " +
                             h.value("theta_hash", std::string()));
    auto save = [&] {
      trainer->save_checkpoint(inner::checkpoint_path(dir, trainer->steps_done()), {{"round", round}});
      inner::prune_checkpoints(dir, 2);
    };
    int64_t steps = 0;
    double loss_sum = 0;
    bool go = true;
    for (; steps < H; ++steps) {
      if (steps == save_after) save();
      if (g_follower_stop.load()) {
        LH_LOG(Warn, "site") << me << ": stopped mid-round " << round << " (rank 0 will fail)";
        return 0;
      }
      if (!(go = broadcast_go(pg, true))) break;
      loss_sum += trainer->train_steps(1).mean_loss;
    }
    if (go && steps == save_after) save();
    if (!go) {  // the steps since the checkpoint are discarded, as rank 0 discards its own
      metrics << json{{"event", "stop"}, {"reason", "rank 0 stopped mid-round"}, {"round", round}}.dump() << "\n";
      LH_LOG(Info, "site") << me << ": rank 0 stopped mid-round " << round;
      return 0;
    }
    const double loss = loss_sum / double(std::max<int64_t>(1, steps));
    const std::string local = protocol::hex64(model_hash(*trainer));
    metrics << json{{"event", "round"}, {"round", round}, {"steps", steps}, {"train_loss", loss},
                    {"theta_hash", theta_hash}, {"param_hash", local}}.dump()
            << "\n" << std::flush;
    LH_LOG(Info, "site") << me << ": round " << round << ": trained " << steps << " steps from θ " << theta_hash
                         << ", train loss " << loss << ", parameters " << local;
  }
}

}  // namespace longhaul::outer
