// `longhaul checkpoint verify FILE...`: reads each checkpoint (a coordinator's coordinator.ckpt
// or a site's checkpoints/step-*.ckpt), checks its header, meta and checksums, and prints one
// JSON line per file: {"file","kind","ok","error"|...}. Exit 0 when every file is usable, 1
// otherwise. For operators after a crash, and for scripts/chaos.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "inner/checkpoint.h"
#include "outer/coordinator_checkpoint.h"

namespace longhaul::app {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
json verify_one(const fs::path& p) {
  json out = {{"file", p.string()}};
  char magic[8] = {};
  std::ifstream(p, std::ios::binary).read(magic, 8);
  try {
    if (std::memcmp(magic, "LHCOORD", 7) == 0) {
      out["kind"] = "coordinator";
      auto st = outer::load_coordinator_checkpoint(p);
      if (!st) throw std::runtime_error("no such file");
      out["next_round"] = st->meta.value("next_round", int64_t{-1});
      out["param_hash"] = st->meta.value("param_hash", std::string());
      out["run_id"] = st->meta.value("run_id", std::string());
    } else {
      out["kind"] = "site";
      const auto meta = inner::read_checkpoint_meta(p);
      out["step"] = meta.step;
      out["round"] = meta.extra.value("round", int64_t{-1});
      out["run_id"] = meta.extra.value("run_id", std::string());
    }
    out["ok"] = true;
  } catch (const std::exception& e) {
    out["ok"] = false;
    out["error"] = e.what();
  }
  return out;
}
}  // namespace

void register_checkpoint(CLI::App& app, CommandFn& run) {
  auto* cmd = app.add_subcommand("checkpoint", "inspect checkpoints");
  cmd->require_subcommand(1);
  auto* verify = cmd->add_subcommand("verify", "check that checkpoint files are complete and load");
  auto files = std::make_shared<std::vector<std::string>>();
  verify->add_option("files", *files, "checkpoint files")->required();
  verify->callback([&run, files] {
    run = [files] {
      int bad = 0;
      for (const auto& f : *files) {
        json r = verify_one(f);
        bad += !r["ok"].get<bool>();
        std::printf("%s\n", r.dump().c_str());
      }
      return bad ? 1 : 0;
    };
  });
}

}  // namespace longhaul::app
