// The corpus: byte-level text (file, directory, glob), .bin shards, the per-file train/val
// split, disjoint site shards, and the DataErrors for bad corpora.
#include "inner/corpus.h"

#include <gtest/gtest.h>
#include "test_support.h"

#include <fstream>
#include <numeric>

#include "common/error.h"
#include "inner/trainer_test_util.h"

namespace longhaul::inner {
namespace {

using testing::scratch_dir;
using testing::write_text;

using test_support::slurp;

CorpusSpec spec(const std::string& path, int64_t block = 8) {
  CorpusSpec s;
  s.path = path;
  s.block_size = block;
  return s;
}

template <typename F>
std::string data_error(F&& f) {
  return test_support::error_text<DataError>(f);
}

TEST(Corpus, DirectorySkipsDatAndHiddenFilesAndSplitsEachFileTail) {
  auto dir = testing::tiny_corpus_dir();
  auto s = spec(dir.string());
  s.val_fraction = 0.25;
  Corpus c = load_corpus(s);
  ASSERT_EQ(c.files.size(), 2u);
  EXPECT_EQ(c.files[0].filename(), "alpha.txt");
  EXPECT_EQ(c.files[1].filename(), "beta.txt");
  const std::string a = slurp(dir / "alpha.txt"), b = slurp(dir / "beta.txt");
  const size_t va = a.size() / 4, vb = b.size() / 4;
  std::string train = a.substr(0, a.size() - va) + b.substr(0, b.size() - vb);
  std::string val = a.substr(a.size() - va) + b.substr(b.size() - vb);
  ASSERT_EQ(c.train.size(), train.size());
  ASSERT_EQ(c.val.size(), val.size());
  for (size_t i = 0; i < train.size(); ++i) ASSERT_EQ(c.train[i], static_cast<unsigned char>(train[i])) << i;
  for (size_t i = 0; i < val.size(); ++i) ASSERT_EQ(c.val[i], static_cast<unsigned char>(val[i])) << i;
}

TEST(Corpus, GlobAndSingleFileAndDuplicateLinks) {
  auto dir = scratch_dir("corpus_glob");
  write_text(dir / "a.txt", std::string(100, 'a'));
  write_text(dir / "b.txt", std::string(100, 'b'));
  write_text(dir / "c.md", std::string(100, 'c'));
  std::filesystem::create_symlink("a.txt", dir / "a.txt.u8");  // as fortune's .u8 links
  EXPECT_EQ(load_corpus(spec((dir / "*.txt").string())).files.size(), 2u);
  EXPECT_EQ(load_corpus(spec((dir / "c.md").string())).train.size(), 90u);
  EXPECT_EQ(load_corpus(spec(dir.string())).files.size(), 3u);  // a.txt.u8 = a.txt, read once
}

TEST(Corpus, BinShardsAreLittleEndianUint16) {
  auto dir = scratch_dir("corpus_bin");
  std::vector<uint16_t> t0(200), t1(100);
  std::iota(t0.begin(), t0.end(), 1000);
  std::iota(t1.begin(), t1.end(), 5000);
  write_token_shard(dir / "s0.bin", t0);
  write_token_shard(dir / "s1.bin", t1);
  auto s = spec((dir / "*.bin").string());
  s.vocab_size = 50304;
  Corpus c = load_corpus(s);
  ASSERT_EQ(c.train.size(), 180u + 90u);
  EXPECT_EQ(c.train[0], 1000);
  EXPECT_EQ(c.train[179], 1179);
  EXPECT_EQ(c.train[180], 5000);
  EXPECT_EQ(c.val.front(), 1180);
  EXPECT_EQ(c.val.back(), 5099);
}

TEST(Corpus, SiteShardsAreDisjointAndCoverTheTrainingStream) {
  auto s = spec(testing::tiny_corpus_dir().string());
  std::vector<uint16_t> all = load_corpus(s).train, joined;
  s.num_shards = 3;
  for (int64_t i = 0; i < 3; ++i) {
    s.shard_index = i;
    Corpus c = load_corpus(s);
    EXPECT_EQ(c.total_train_tokens, static_cast<int64_t>(all.size()));
    EXPECT_GE(c.train.size(), all.size() / 3);
    joined.insert(joined.end(), c.train.begin(), c.train.end());
  }
  EXPECT_EQ(joined, all);  // contiguous, disjoint, in order, nothing lost
}

TEST(Corpus, ClearErrors) {
  auto dir = scratch_dir("corpus_errors");
  EXPECT_NE(data_error([&] { load_corpus(spec((dir / "nope").string())); }).find("does not exist"),
            std::string::npos);
  EXPECT_NE(data_error([&] { load_corpus(spec((dir / "*.txt").string())); }).find("no corpus files match"),
            std::string::npos);
  std::filesystem::create_directories(dir / "empty_dir");
  EXPECT_NE(data_error([&] { load_corpus(spec((dir / "empty_dir").string())); }).find("no corpus files"),
            std::string::npos);
  write_text(dir / "empty.txt", "");
  EXPECT_NE(data_error([&] { load_corpus(spec((dir / "empty.txt").string())); }).find("corpus is empty"),
            std::string::npos);
  write_text(dir / "short.txt", std::string(20, 'x'));
  auto msg = data_error([&] { load_corpus(spec((dir / "short.txt").string(), 32)); });
  EXPECT_NE(msg.find("shorter than model.block_size + 1 = 33"), std::string::npos) << msg;
  EXPECT_NE(msg.find("short.txt"), std::string::npos) << msg;
  write_text(dir / "odd.bin", "abc");
  EXPECT_NE(data_error([&] { load_corpus(spec((dir / "odd.bin").string())); }).find("even size"),
            std::string::npos);
  write_token_shard(dir / "big.bin", std::vector<uint16_t>(100, 300));
  msg = data_error([&] { load_corpus(spec((dir / "big.bin").string())); });
  EXPECT_NE(msg.find("big.bin: token 0 has id 300 >= model.vocab_size = 256"), std::string::npos) << msg;
  auto s = spec((dir / "short.txt").string(), 4);
  s.vocab_size = 100;  // 'x' = 120
  EXPECT_NE(data_error([&] { load_corpus(s); }).find("byte-level text needs"), std::string::npos);
}

}  // namespace
}  // namespace longhaul::inner
