// A received message payload held in an unnamed temporary file instead of memory: with
// ServerOptions::spool_dir set, a connection writes each large payload to disk as its bytes
// arrive (one read chunk of memory per connection), and the receiver loads it when it handles
// the message, one at a time. K peers uploading at once then cost K × (read chunk) of memory,
// not K × payload. The file has no name (O_TMPFILE; elsewhere created and unlinked at once),
// so it vanishes with its last handle, a crash included: nothing to clean up.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>

#include "transport/bytes.h"

namespace longhaul::transport {

// Where and from what size payloads are spooled (a receiver's option).
struct SpoolPolicy {
  std::filesystem::path dir;          // empty: every payload stays in memory
  uint64_t min_bytes = 1ull << 20;    // smaller payloads stay in memory
  bool applies(uint64_t payload_bytes) const { return !dir.empty() && payload_bytes >= min_bytes; }
};

class SpooledPayload {
 public:
  // Creates the unnamed file in `dir`. std::runtime_error naming the directory when it cannot.
  explicit SpooledPayload(const std::filesystem::path& dir);
  ~SpooledPayload();
  SpooledPayload(const SpooledPayload&) = delete;
  SpooledPayload& operator=(const SpooledPayload&) = delete;

  // Appends bytes (the next part of the payload, in order). std::runtime_error when the disk
  // refuses them (full, I/O error): the receiver drops the connection, as for a read failure.
  void append(std::span<const std::byte> part);
  uint64_t size() const { return size_; }
  // The whole payload, read back into memory.
  Bytes read() const;
  // Gives the file the name `path` (same file system as the spool; must not exist) and makes
  // it durable (fdatasync, then the directory's fsync), without copying its bytes. Returns
  // false when the name cannot be given (e.g. another file system: the caller writes a copy);
  // throws std::runtime_error when the data or the directory cannot be synced.
  bool keep_as(const std::filesystem::path& path) const;

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
  std::filesystem::path dir_;
};

}  // namespace longhaul::transport
