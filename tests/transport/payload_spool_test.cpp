// Payloads spooled to disk as they arrive (payload_spool.h, issue 9 §3): the frame reader
// writes a large payload to an unnamed file through one read-chunk buffer, checks the same
// checksum, and load_payload() gives back exactly the bytes sent; small payloads stay in memory.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <random>

#include "transport/message.h"
#include "transport/payload_spool.h"

namespace longhaul::transport {
namespace {

namespace fs = std::filesystem;

struct SpoolDir {
  fs::path path = fs::temp_directory_path() / ("lh-spool-" + std::to_string(::getpid()));
  SpoolDir() { fs::create_directories(path); }
  ~SpoolDir() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(path, ec)) fs::remove(e.path(), ec);
    fs::remove(path, ec);
  }
};

Message random_message(std::size_t payload_bytes, uint32_t seed) {
  Message m{"upload", {{"round", 3}}, Bytes(payload_bytes)};
  std::mt19937 rng(seed);
  for (auto& b : m.payload) b = static_cast<std::byte>(rng());
  return m;
}

// Feeds `wire` to a reader in reads of at most `read_bytes`, as a connection does.
Message read_in_parts(FrameReader& r, const Bytes& wire, std::size_t read_bytes) {
  std::size_t at = 0;
  while (!r.done()) {
    auto buf = r.next_buffer(read_bytes);
    const std::size_t n = std::min(buf.size(), wire.size() - at);
    std::memcpy(buf.data(), wire.data() + at, n);
    at += n;
    r.consumed(n);
  }
  EXPECT_EQ(at, wire.size());
  return r.take();
}

TEST(PayloadSpool, LargePayloadGoesToAnUnnamedFileAndComesBackBitwise) {
  SpoolDir dir;
  const Message sent = random_message(3 * 1000 * 1000 + 7, 1);
  const Bytes wire = encode_message(sent);
  FrameReader reader(1ull << 30, SpoolPolicy{dir.path, 1 << 20});
  Message got = read_in_parts(reader, wire, 256 * 1024);
  ASSERT_TRUE(got.spooled);
  EXPECT_TRUE(got.payload.empty());
  EXPECT_EQ(payload_size(got), sent.payload.size());
  EXPECT_EQ(got.type, "upload");
  EXPECT_EQ(got.header, sent.header);
  EXPECT_TRUE(fs::is_empty(dir.path)) << "the spool file has a name";
  load_payload(got);
  EXPECT_FALSE(got.spooled);
  ASSERT_EQ(got.payload.size(), sent.payload.size());
  EXPECT_EQ(std::memcmp(got.payload.data(), sent.payload.data(), sent.payload.size()), 0);
}

TEST(PayloadSpool, SmallPayloadStaysInMemoryAndNoPolicyMeansNoSpool) {
  SpoolDir dir;
  const Message sent = random_message(1000, 2);
  FrameReader small(1ull << 30, SpoolPolicy{dir.path, 1001});
  Message a = read_in_parts(small, encode_message(sent), 300);
  EXPECT_FALSE(a.spooled);
  EXPECT_EQ(a.payload, sent.payload);
  FrameReader off(1ull << 30);  // default policy: no directory
  Message b = read_in_parts(off, encode_message(random_message(4 << 20, 3)), 1 << 20);
  EXPECT_FALSE(b.spooled);
  EXPECT_EQ(b.payload.size(), 4u << 20);
}

TEST(PayloadSpool, CorruptedSpooledPayloadFailsTheChecksum) {
  SpoolDir dir;
  Bytes wire = encode_message(random_message(2 << 20, 4));
  wire[wire.size() / 2] ^= std::byte{1};
  FrameReader reader(1ull << 30, SpoolPolicy{dir.path, 0});
  EXPECT_THROW(read_in_parts(reader, wire, 64 * 1024), WireError);
}

TEST(PayloadSpool, AFullDiskIsAWireErrorOfThatMessageNotACrash) {
  SpoolDir dir;
  // RLIMIT_FSIZE below the payload: the write fails with EFBIG (SIGXFSZ ignored), as on a full disk.
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto* prev = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 1 << 20;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  FrameReader reader(1ull << 30, SpoolPolicy{dir.path, 0});
  try {
    read_in_parts(reader, encode_message(random_message(3 << 20, 5)), 256 * 1024);
    ADD_FAILURE() << "a payload over the file size limit was spooled";
  } catch (const WireError& e) {
    EXPECT_NE(std::string(e.what()).find("payload spool in " + dir.path.string()), std::string::npos) << e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, prev);
}

TEST(PayloadSpool, UnwritableDirectoryIsNamedInTheError) {
  try {
    SpooledPayload p("/nonexistent/spool/dir");
    FAIL() << "created a spool file in a missing directory";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/spool/dir"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longhaul::transport
