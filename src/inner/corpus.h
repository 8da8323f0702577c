// A training corpus as two token streams (train, validation), loaded once into memory.
//
// Sources (CorpusSpec::path):
//   * a text file, a directory of text files (non-recursive; hidden files, `.dat` index files
//     and duplicate links to the same file are skipped), or a glob ("data/*.txt") — tokenised
//     byte-level: token = byte value (0..255), so vocab_size must be >= 256 for text;
//   * nanoGPT token shards: `.bin` files of little-endian uint16 token ids (a file, directory or
//     glob of them), for corpora tokenised elsewhere; every id must be < vocab_size.
// Files are read in sorted path order. A corpus may not mix `.bin` shards and text.
//
// Split (per file, so every file contributes to both): the LAST `val_fraction` of each file's
// tokens (floor) is validation, the rest is training. Train parts are concatenated in file
// order into the train stream, validation parts into the validation stream.
//
// Site sharding: the train stream is cut into `num_shards` contiguous equal parts (the last
// one takes the remainder); shard `shard_index` keeps only its part. Parts are disjoint, so
// sites never train on the same tokens. The validation stream is the same for every shard so
// that val losses of different sites are comparable.
//
// Every problem throws DataError naming the path: missing path, no files, empty corpus,
// a stream shorter than block_size + 1 tokens, an odd-sized `.bin`, a token id >= vocab_size.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace longhaul::inner {

struct CorpusSpec {
  std::string path;           // file, directory or glob
  std::string format = "auto";  // "auto" (by extension: .bin = shards), "text", "bin"
  double val_fraction = 0.1;  // share of each file's tokens held out for validation, [0, 0.5]
  int64_t shard_index = 0;    // this site's shard, in [0, num_shards)
  int64_t num_shards = 1;     // number of disjoint training shards (sites)
  int64_t block_size = 0;     // every stream must hold at least block_size + 1 tokens
  int64_t vocab_size = 256;   // every token id must be < vocab_size
  bool need_val = true;       // require a validation stream of block_size + 1 tokens
};

struct Corpus {
  std::vector<uint16_t> train;  // this shard's training tokens
  std::vector<uint16_t> val;    // validation tokens (all shards)
  std::vector<std::filesystem::path> files;  // the files read, in order
  int64_t total_train_tokens = 0;  // all shards together
};

// Resolves `path` (file, directory, glob) to the sorted list of corpus files.
std::vector<std::filesystem::path> list_corpus_files(const std::string& path);

Corpus load_corpus(const CorpusSpec& spec);

// Writes tokens as a nanoGPT `.bin` shard (little-endian uint16). For tests and tools.
void write_token_shard(const std::filesystem::path& path, const std::vector<uint16_t>& tokens);

}  // namespace longhaul::inner
