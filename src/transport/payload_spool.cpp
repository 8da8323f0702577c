#include "transport/payload_spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace longhaul::transport {

namespace {
std::runtime_error spool_error(const std::filesystem::path& dir, const char* what) {
  return std::runtime_error(std::string("payload spool in ") + dir.string() + ": " + what + ": " +
                            std::strerror(errno));
}
}  // namespace

SpooledPayload::SpooledPayload(const std::filesystem::path& dir) : dir_(dir) {
#ifdef O_TMPFILE
  fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#endif
  if (fd_ < 0) {  // no O_TMPFILE on this file system: a named file, unlinked at once
    std::string path = (dir / "payload-XXXXXX").string();
    fd_ = ::mkostemp(path.data(), O_CLOEXEC);
    if (fd_ < 0) throw spool_error(dir, "cannot create a file");
    ::unlink(path.c_str());
  }
}

SpooledPayload::~SpooledPayload() {
  if (fd_ >= 0) ::close(fd_);
}

void SpooledPayload::append(std::span<const std::byte> part) {
  const std::byte* p = part.data();
  std::size_t left = part.size();
  while (left > 0) {
    const ssize_t n = ::pwrite(fd_, p, left, static_cast<off_t>(size_));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw spool_error(dir_, "cannot write");
    p += n, left -= static_cast<std::size_t>(n), size_ += static_cast<uint64_t>(n);
  }
}

bool SpooledPayload::keep_as(const std::filesystem::path& path) const {
  if (::fdatasync(fd_) != 0) throw spool_error(dir_, "cannot sync");
  const std::string proc = "/proc/self/fd/" + std::to_string(fd_);
  if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) != 0) return false;
  // The new name is durable only once its directory is.
  const int d = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0) throw spool_error(path.parent_path(), "cannot open to sync");
  const int synced = ::fsync(d);
  ::close(d);
  if (synced != 0) throw spool_error(path.parent_path(), "cannot sync");
  return true;
}

Bytes SpooledPayload::read() const {
  Bytes out(size_);
  uint64_t done = 0;
  while (done < size_) {
    const ssize_t n = ::pread(fd_, out.data() + done, size_ - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw spool_error(dir_, "cannot read back");
    done += static_cast<uint64_t>(n);
  }
  return out;
}

}  // namespace longhaul::transport
