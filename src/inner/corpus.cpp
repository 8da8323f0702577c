#include "inner/corpus.h"

#include <glob.h>

#include <algorithm>
#include <bit>
#include <fstream>
#include <set>

#include "common/atomic_file.h"
#include "common/error.h"

namespace longhaul::inner {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, ".bin shards are read as host uint16");

namespace {

bool is_glob(const std::string& p) { return p.find_first_of("*?[") != std::string::npos; }

bool is_bin(const fs::path& p) { return p.extension() == ".bin"; }

// Skipped in directories: hidden files and fortune's `.dat` index files.
bool skip_in_directory(const fs::path& p) {
  auto name = p.filename().string();
  return name.empty() || name[0] == '.' || p.extension() == ".dat";
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw DataError(p.string() + ": cannot open corpus file");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError(p.string() + ": error reading corpus file");
  return s;
}

std::vector<uint16_t> tokenize_file(const fs::path& p, bool bin, int64_t vocab_size) {
  std::string bytes = read_all(p);
  std::vector<uint16_t> out;
  if (bin) {
    if (bytes.size() % 2 != 0)
      throw DataError(p.string() + ": .bin shard has " + std::to_string(bytes.size()) +
                      " bytes; expected little-endian uint16 tokens (an even size)");
    out.resize(bytes.size() / 2);
    std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(out.data()));
  } else {
    out.assign(reinterpret_cast<const unsigned char*>(bytes.data()),
               reinterpret_cast<const unsigned char*>(bytes.data()) + bytes.size());
  }
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i] >= vocab_size)
      throw DataError(p.string() + ": token " + std::to_string(i) + " has id " +
                      std::to_string(out[i]) + " >= model.vocab_size = " +
                      std::to_string(vocab_size) +
                      (bin ? "" : " (byte-level text needs model.vocab_size >= 256)"));
  return out;
}

}  // namespace

std::vector<fs::path> list_corpus_files(const std::string& path) {
  if (path.empty()) throw DataError("data.path is empty: expected a file, directory or glob");
  std::vector<fs::path> files;
  if (is_glob(path)) {
    glob_t g{};
    int rc = ::glob(path.c_str(), 0, nullptr, &g);
    if (rc == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i)
        if (fs::is_regular_file(g.gl_pathv[i])) files.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    if (files.empty()) throw DataError(path + ": no corpus files match this glob");
  } else if (fs::is_directory(path)) {
    for (const auto& e : fs::directory_iterator(path))
      if (e.is_regular_file() && !skip_in_directory(e.path())) files.push_back(e.path());
    if (files.empty()) throw DataError(path + ": directory holds no corpus files");
  } else if (fs::exists(path)) {
    files.emplace_back(path);
  } else {
    throw DataError(path + ": corpus path does not exist (expected a file, directory or glob)");
  }
  std::sort(files.begin(), files.end());
  // The same file reached twice (fortune's `x.u8 -> x` links) would be read twice.
  std::set<fs::path> seen;
  std::vector<fs::path> unique;
  for (auto& f : files)
    if (seen.insert(fs::weakly_canonical(f)).second) unique.push_back(f);
  return unique;
}

Corpus load_corpus(const CorpusSpec& spec) {
  Corpus c;
  c.files = list_corpus_files(spec.path);
  bool any_bin = false, any_text = false;
  for (const auto& f : c.files) (is_bin(f) ? any_bin : any_text) = true;
  bool bin = spec.format == "bin" || (spec.format == "auto" && any_bin);
  if (spec.format == "auto" && any_bin && any_text)
    throw DataError(spec.path + ": mixes .bin token shards and text files (e.g. " +
                    c.files.front().string() + "); set data.format or separate them");

  std::vector<uint16_t> train_all;
  for (const auto& f : c.files) {
    auto tokens = tokenize_file(f, bin, spec.vocab_size);
    auto n_val = static_cast<size_t>(static_cast<double>(tokens.size()) * spec.val_fraction);
    size_t n_train = tokens.size() - n_val;
    train_all.insert(train_all.end(), tokens.begin(), tokens.begin() + n_train);
    c.val.insert(c.val.end(), tokens.begin() + n_train, tokens.end());
  }
  if (train_all.empty() && c.val.empty())
    throw DataError(spec.path + ": corpus is empty (" + std::to_string(c.files.size()) +
                    " file(s), 0 tokens)");
  c.total_train_tokens = static_cast<int64_t>(train_all.size());

  const int64_t n = spec.num_shards, i = spec.shard_index;
  if (n < 1 || i < 0 || i >= n)
    throw DataError("data.shard_index = " + std::to_string(i) + " is not in [0, data.num_shards = " +
                    std::to_string(n) + ")");
  const int64_t part = c.total_train_tokens / n;
  const int64_t begin = i * part, end = (i == n - 1) ? c.total_train_tokens : begin + part;
  c.train.assign(train_all.begin() + begin, train_all.begin() + end);

  const int64_t need = spec.block_size + 1;
  if (static_cast<int64_t>(c.train.size()) < need)
    throw DataError(spec.path + ": training tokens of shard " + std::to_string(i) + " of " +
                    std::to_string(n) + " = " + std::to_string(c.train.size()) +
                    ", shorter than model.block_size + 1 = " + std::to_string(need) +
                    " (use a larger corpus, fewer shards or a smaller block_size)");
  if (spec.need_val && static_cast<int64_t>(c.val.size()) < need)
    throw DataError(spec.path + ": validation tokens (last data.val_fraction of each file) = " +
                    std::to_string(c.val.size()) + ", shorter than model.block_size + 1 = " +
                    std::to_string(need) + " (raise data.val_fraction or use a larger corpus)");
  return c;
}

void write_token_shard(const fs::path& path, const std::vector<uint16_t>& tokens) {
  write_file_atomic(path, std::span<const std::byte>(reinterpret_cast<const std::byte*>(tokens.data()),
                                                      tokens.size() * sizeof(uint16_t)));
}

}  // namespace longhaul::inner
