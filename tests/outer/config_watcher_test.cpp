// Live tuning: [sync] changes are picked up (file change or SIGHUP) and reported; changes to
// any other key are refused (the running value stays) and a broken file changes nothing.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <thread>

#include "outer/config_watcher.h"
#include "outer/coordinator_config.h"
#include "common/error.h"
#include "outer/test_dirs.h"

namespace longhaul::outer {
namespace {

namespace fs = std::filesystem;

struct WatchedFile {
  fs::path dir = fs::temp_directory_path() / ("lh_watch_" + std::to_string(::getpid()));
  fs::path file = dir / "coordinator.toml";
  WatchedFile() {
    fs::create_directories(dir / "corpus");
    std::ofstream(dir / "corpus" / "a.txt") << std::string(4000, 'x');
  }
  ~WatchedFile() { testing::remove_tree(dir); }
  // extra: appended at the end (after [data]); sync_extra: more [sync] keys.
  void write(int inner_steps, double outer_lr, const std::string& extra = "",
             const std::string& sync_extra = "") {
    std::ofstream f(file);
    f << "[model]\nn_layer = 1\nn_head = 1\nn_embd = 8\nblock_size = 8\n"
      << "[outer]\nlr = " << outer_lr << "\n[sync]\ninner_steps = " << inner_steps
      << "\nmin_sites = 1\n" << sync_extra << "[data]\npath = \"corpus\"\n"
      << extra;
    f.close();
    // Make sure the mtime moves even on coarse-grained file systems.
    fs::last_write_time(file, fs::last_write_time(file) + std::chrono::seconds(++bumps));
  }
  int bumps = 0;
};

TEST(ConfigWatcher, SyncChangeIsPickedUpOtherKeysAreRefused) {
  WatchedFile w;
  w.write(50, 0.7);
  auto cfg = read_coordinator_config(w.file, {});
  ConfigWatcher watcher(w.file, {}, cfg.effective_toml, cfg.sync);
  EXPECT_FALSE(watcher.poll());  // unchanged file: nothing

  w.write(20, 0.7);
  auto p = watcher.poll();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->inner_steps, 20);
  EXPECT_EQ(watcher.current().inner_steps, 20);

  w.write(20, 0.5);  // outer.lr cannot change mid-run
  EXPECT_FALSE(watcher.poll());
  EXPECT_EQ(fixed_keys_changed(cfg.effective_toml, read_coordinator_config(w.file, {}).effective_toml),
            std::vector<std::string>{"outer.lr"});

  w.write(20, 0.7, "[sync]\nbroken = = 1\n");  // unparsable: keep running config
  EXPECT_FALSE(watcher.poll());
  EXPECT_EQ(watcher.current().inner_steps, 20);
}

TEST(ConfigWatcher, ZstdLevelIsLiveAndRangeChecked) {
  WatchedFile w;
  w.write(50, 0.7);
  auto cfg = read_coordinator_config(w.file, {});
  EXPECT_EQ(cfg.sync.zstd_level, SyncPolicy{}.zstd_level);  // the documented default
  ConfigWatcher watcher(w.file, {}, cfg.effective_toml, cfg.sync);
  w.write(50, 0.7, "", "zstd_level = 7\n");
  auto p = watcher.poll();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->zstd_level, 7);
  EXPECT_EQ(describe_change(cfg.sync, *p), "zstd_level " + std::to_string(cfg.sync.zstd_level) + " -> 7");
  EXPECT_THROW(read_coordinator_config(w.file, {"sync.zstd_level=23"}), ConfigError);
  EXPECT_THROW(read_coordinator_config(w.file, {"sync.zstd_level=-1"}), ConfigError);
}

TEST(ConfigWatcher, SighupForcesAReread) {
  WatchedFile w;
  w.write(50, 0.7);
  auto cfg = read_coordinator_config(w.file, {"sync.min_sites=1"});
  ConfigWatcher::install_sighup_handler();
  ConfigWatcher watcher(w.file, {}, cfg.effective_toml, cfg.sync);
  const int before = watcher.reloads();
  std::raise(SIGHUP);
  EXPECT_FALSE(watcher.poll());  // re-read, nothing changed
  EXPECT_EQ(watcher.reloads(), before + 1);
}

TEST(ConfigWatcher, AccessListsAreLive) {
  WatchedFile w;
  w.write(50, 0.7, "[coordinator]\nallowed_sites = [\"a\", \"b\"]\n");
  auto cfg = read_coordinator_config(w.file, {});
  ConfigWatcher watcher(w.file, {}, cfg.effective_toml, cfg.sync, AccessLists{cfg.allowed_sites, cfg.allowed_operators});
  EXPECT_FALSE(watcher.take_access_change());
  w.write(50, 0.7, "[coordinator]\nallowed_sites = [\"a\"]\nallowed_operators = [\"ops\"]\n");
  EXPECT_FALSE(watcher.poll());  // no [sync] change ...
  auto a = watcher.take_access_change();  // ... but new access lists, not refused as fixed keys
  ASSERT_TRUE(a);
  EXPECT_EQ(a->sites, std::vector<std::string>{"a"});
  EXPECT_EQ(a->operators, std::vector<std::string>{"ops"});
  EXPECT_FALSE(watcher.take_access_change());  // taken once
  EXPECT_TRUE(fixed_keys_changed(cfg.effective_toml, read_coordinator_config(w.file, {}).effective_toml).empty());
  // A list that does not parse: the whole reload is refused, the running lists stay.
  w.write(50, 0.7, "[coordinator]\nallowed_sites = \"a\"\n");
  EXPECT_FALSE(watcher.poll());
  EXPECT_FALSE(watcher.take_access_change());
}

// Streaming DiLoCo's keys (sync.fragments, overlap_steps, merge_alpha) are checked against the
// model and the schedule, and are fixed for the run: a live edit of them is reported and
// ignored, and a live [sync] edit that would break the schedule is refused.
TEST(ConfigWatcher, StreamingKeysAreCheckedAndFixedForTheRun) {
  WatchedFile w;
  w.write(8, 0.7);
  auto error_of = [&](const std::vector<std::string>& ovr) -> std::string {
    try {
      read_coordinator_config(w.file, ovr);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of({"sync.fragments=2"}).find("model.n_layer = 1"), std::string::npos) << error_of({"sync.fragments=2"});
  EXPECT_EQ(error_of({"model.n_layer=4", "sync.fragments=4", "sync.overlap_steps=1"}), "");
  // H = 8, P = 4: exchanges 2 steps apart, so at most 1 step of overlap.
  const std::string too_long = error_of({"model.n_layer=4", "sync.fragments=4", "sync.overlap_steps=2"});
  EXPECT_NE(too_long.find("sync.overlap_steps"), std::string::npos) << too_long;
  EXPECT_NE(too_long.find("less than 2"), std::string::npos) << too_long;
  EXPECT_NE(error_of({"model.n_layer=4", "sync.fragments=2", "sync.balance=\"equal_time\""}).find("equal_steps"),
            std::string::npos);
  EXPECT_NE(error_of({"model.n_layer=4", "sync.fragments=2", "sync.inner_steps=\"auto\""}).find("auto"),
            std::string::npos);
  EXPECT_NE(error_of({"sync.overlap_steps=8"}).find("sync.overlap_steps"), std::string::npos);  // P = 1: τ < H
  EXPECT_NE(error_of({"sync.merge_alpha=1.0"}).find("sync.merge_alpha"), std::string::npos);

  w.write(8, 0.7, "", "fragments = 2\noverlap_steps = 1\n");
  const std::vector<std::string> ovr = {"model.n_layer=2"};
  auto cfg = read_coordinator_config(w.file, ovr);
  EXPECT_EQ(cfg.streaming.fragments, 2);
  EXPECT_EQ(cfg.streaming.overlap_steps, 1);
  EXPECT_EQ(cfg.streaming.merge_alpha, 0.5);  // the paper's default
  ConfigWatcher watcher(w.file, ovr, cfg.effective_toml, cfg.sync);
  w.write(8, 0.7, "", "fragments = 1\noverlap_steps = 1\n");
  EXPECT_FALSE(watcher.poll()) << "sync.fragments is not live";
  EXPECT_EQ(fixed_keys_changed(cfg.effective_toml, read_coordinator_config(w.file, ovr).effective_toml),
            std::vector<std::string>{"sync.fragments"});
  w.write(1, 0.7, "", "fragments = 2\noverlap_steps = 1\n");  // H = 1 < P: the edit is refused
  EXPECT_FALSE(watcher.poll());
  EXPECT_EQ(watcher.current().inner_steps, 8);
  w.write(12, 0.7, "", "fragments = 2\noverlap_steps = 1\n");  // a longer H keeps the schedule valid
  ASSERT_TRUE(watcher.poll());
  EXPECT_EQ(watcher.current().inner_steps, 12);
}

}  // namespace
}  // namespace longhaul::outer
