#include "inner/trainer_test_util.h"

#include <ftw.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "common/config_reader.h"

namespace longhaul::inner::testing {

namespace fs = std::filesystem;

namespace {
// std::filesystem::remove_all binds to libtorch.so's exported copy, which crashes on a
// non-empty directory in this wheel; nftw does the same job without it.
void remove_tree(const fs::path& p) {
  ::nftw(p.c_str(), [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); },
         16, FTW_DEPTH | FTW_PHYS);
}
}  // namespace

fs::path scratch_dir(const std::string& name) {
  fs::path p = fs::path(LONGHAUL_BUILD_DIR) / "test-scratch" / "inner" / name;
  remove_tree(p);
  fs::create_directories(p);
  return p;
}

void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

fs::path tiny_corpus_dir() { return fs::path(LONGHAUL_SOURCE_DIR) / "tests/data/tiny_corpus"; }

std::string tiny_config_toml(const std::string& corpus) {
  return "[model]\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 16\nvocab_size = 256\n"
         "[data]\npath = \"" + corpus + "\"\nval_fraction = 0.2\n"
         "[optim]\nlr = 3e-3\nmin_lr = 3e-4\nwarmup_steps = 3\n"
         "[train]\nsteps = 20\nbatch_size = 4\nthreads = 1\nseed = 7\nlog_every = 1\n"
         "eval_every = 0\neval_batches = 2\ncheckpoint_every = 0\n";
}

TrainConfig tiny_config(const std::string& corpus) {
  auto r = ConfigReader::from_string(tiny_config_toml(corpus), "tiny.toml");
  return read_train_config(r);
}

namespace {
std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
}  // namespace

CliResult run_longhaul(const std::vector<std::string>& args) {
  std::string cmd = quote(LONGHAUL_BINARY);
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " 2>&1 < /dev/null";
  CliResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace longhaul::inner::testing
