// Crash-safe file replacement: write to "<path>.tmp-<pid>", fsync, rename over <path>,
// fsync the directory. A reader sees either the old file or the complete new one, never a
// half-written file. Used for every checkpoint, export and metadata file.
#pragma once

#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace longhaul {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path target);
  ~AtomicFileWriter();  // removes the temp file unless commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, std::size_t bytes);  // throws std::runtime_error naming the path
  void commit();                                    // fsync + rename + fsync(dir)
  const std::filesystem::path& target() const { return target_; }

 private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  std::FILE* f_ = nullptr;
  bool committed_ = false;
};

// The temp files of writes to `target` (in flight, or left by a crash that interrupted one).
std::vector<std::filesystem::path> temp_files_of(const std::filesystem::path& target);

void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes);
void write_file_atomic(const std::filesystem::path& path, std::string_view text);
// Reads a whole file; throws UserError naming the path when it cannot.
std::string read_file(const std::filesystem::path& path);

}  // namespace longhaul
