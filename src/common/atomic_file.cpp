#include "common/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/error.h"

namespace longhaul {
namespace {
[[noreturn]] void fail(const std::filesystem::path& p, const char* what) {
  throw std::runtime_error(p.string() + ": " + what + ": " + std::strerror(errno));
}
void fsync_dir(const std::filesystem::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}
constexpr const char* kTempInfix = ".tmp-";  // <target>.tmp-<pid>
}  // namespace

std::vector<std::filesystem::path> temp_files_of(const std::filesystem::path& target) {
  std::vector<std::filesystem::path> out;
  const std::string prefix = target.filename().string() + kTempInfix;
  std::error_code ec;
  const auto dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path());
  return out;
}

AtomicFileWriter::AtomicFileWriter(std::filesystem::path target) : target_(std::move(target)) {
  temp_ = target_;
  temp_ += kTempInfix + std::to_string(::getpid());
  if (target_.has_parent_path()) std::filesystem::create_directories(target_.parent_path());
  f_ = std::fopen(temp_.c_str(), "wb");
  if (!f_) fail(temp_, "cannot create");
}

AtomicFileWriter::~AtomicFileWriter() {
  if (f_) std::fclose(f_);
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(temp_, ec);
  }
}

void AtomicFileWriter::write(const void* data, std::size_t bytes) {
  LH_CHECK(f_ != nullptr && !committed_, "write after commit to ", target_.string());
  if (bytes && std::fwrite(data, 1, bytes, f_) != bytes) fail(temp_, "write failed");
}

void AtomicFileWriter::commit() {
  LH_CHECK(f_ != nullptr && !committed_, "double commit of ", target_.string());
  if (std::fflush(f_) != 0) fail(temp_, "flush failed");
  if (::fsync(::fileno(f_)) != 0) fail(temp_, "fsync failed");
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    fail(temp_, "close failed");
  }
  f_ = nullptr;
  if (std::rename(temp_.c_str(), target_.c_str()) != 0) fail(target_, "rename failed");
  committed_ = true;
  fsync_dir(target_.parent_path());
}

void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  AtomicFileWriter w(path);
  w.write(bytes.data(), bytes.size());
  w.commit();
}

void write_file_atomic(const std::filesystem::path& path, std::string_view text) {
  AtomicFileWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path.string() + ": cannot open for reading: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace longhaul
