#include "common/atomic_file.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace fs = std::filesystem;

TEST(AtomicFile, ReplacesContentAndLeavesNoTemp) {
  fs::path dir = fs::temp_directory_path() / ("lh_atomic_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path f = dir / "x.bin";
  longhaul::write_file_atomic(f, std::string_view("old"));
  longhaul::write_file_atomic(f, std::string_view("new content"));
  EXPECT_EQ(longhaul::read_file(f), "new content");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);
  fs::remove_all(dir);
}

TEST(AtomicFile, UncommittedWriterLeavesOldFile) {
  fs::path dir = fs::temp_directory_path() / ("lh_atomic2_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path f = dir / "x.bin";
  longhaul::write_file_atomic(f, std::string_view("keep"));
  {
    longhaul::AtomicFileWriter w(f);
    w.write("partial", 7);
    // no commit: simulates a crash/exception mid-write
  }
  EXPECT_EQ(longhaul::read_file(f), "keep");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);
  fs::remove_all(dir);
}
