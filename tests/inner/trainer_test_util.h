// Shared helpers for the data/loop tests: scratch dirs, tiny configs, running the real binary.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "inner/train_config.h"

namespace longhaul::inner::testing {

// A fresh, empty directory under the build tree (removed first if present).
std::filesystem::path scratch_dir(const std::string& name);
void write_text(const std::filesystem::path& p, const std::string& text);
std::filesystem::path tiny_corpus_dir();  // tests/data/tiny_corpus

// A tiny, fast, deterministic CPU config over `corpus` (1 layer, 16 channels, block 16,
// batch 4, 1 thread, 20 steps, no periodic eval/checkpoint).
TrainConfig tiny_config(const std::string& corpus);
// Same as TOML text, for the binary and the config reader.
std::string tiny_config_toml(const std::string& corpus);

struct CliResult {
  int status = -1;     // exit status
  std::string output;  // stdout + stderr
};
// Runs LONGHAUL_BINARY with `args` (shell-quoted here), capturing output.
CliResult run_longhaul(const std::vector<std::string>& args);

}  // namespace longhaul::inner::testing
