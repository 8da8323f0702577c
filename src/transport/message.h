// One framed message on the channel: a small JSON header plus a binary payload
// (TensorPipe's descriptor/payload split). On the wire it is ONE binary WebSocket message:
//
//   offset  size  field
//   0       4     magic "LHM1" (0x314D484C little-endian)
//   4       2     format version (kWireVersion), little-endian
//   6       4     header_len: bytes of the JSON header that follows, <= kMaxHeaderBytes
//   10      H     header JSON: {"type": str, "payload_bytes": uint, "header": object}
//   10+H    P     payload (P = payload_bytes)
//   10+H+P  8     XXH3-64 (seed 0) of every preceding byte of the message, little-endian
//
// The receiver reads the fixed prefix and the header first, checks payload_bytes against its
// cap, and only then allocates the payload (two-phase read: no allocation a peer can inflate).
#pragma once

#include <array>
#include <memory>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <xxhash.h>

#include "transport/bytes.h"
#include "transport/payload_spool.h"

namespace longhaul::transport {

struct Message {
  std::string type;                 // e.g. "upload", "update", "__ack" (leading "__" is reserved)
  nlohmann::json header = nlohmann::json::object();  // small metadata (run id, round, ...)
  Bytes payload;   // opaque bytes (a codec payload), may be empty
  // Receiver only: a payload spooled to disk as it arrived (SpoolPolicy); `payload` is then
  // empty until load_payload(). Shared: a message may be copied while it waits.
  std::shared_ptr<const SpooledPayload> spooled = nullptr;
  // Sender only: when set, sent in place of `payload`: one buffer for many messages whose
  // headers differ (e.g. θ in every site's welcome), never copied per message.
  std::shared_ptr<const Bytes> shared_payload = nullptr;
  // Receiver only, never on the wire: seconds from the arrival of the message's first bytes to
  // its last (the transfer time as the receiver sees it; 0 on the sender side).
  double receive_s = 0;
};

// The payload bytes a sender writes: shared_payload when set, else payload.
inline std::span<const std::byte> outgoing_payload(const Message& m) {
  return m.shared_payload ? std::span<const std::byte>(*m.shared_payload) : std::span<const std::byte>(m.payload);
}
// The payload's size, in memory, shared or spooled.
inline uint64_t payload_size(const Message& m) {
  return m.spooled ? m.spooled->size() : outgoing_payload(m).size();
}
// Brings a spooled payload into `payload` (and drops the file); no-op for one in memory.
// std::runtime_error when the spool cannot be read back.
void load_payload(Message& m);

// A malformed or over-cap message from a peer: the connection that produced it is closed.
class WireError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr uint32_t kWireMagic = 0x314D484C;  // "LHM1"
inline constexpr uint16_t kWireVersion = 2;  // 2: XXH3-64 trailer (1 had XXH64)
inline constexpr std::size_t kPrefixBytes = 10;     // magic + version + header_len
inline constexpr std::size_t kChecksumBytes = 8;
inline constexpr std::size_t kMaxHeaderBytes = 64 << 10;  // 64 KiB of JSON metadata at most (headers are small)

// Sender side: the bytes before the payload (prefix + header JSON) and, after the payload was
// fed through update() in order (in any split), the 8 checksum bytes. Holds no copy of the
// payload, so the sender checksums each chunk while it is hot in cache, just before writing it.
class FrameWriter {
 public:
  explicit FrameWriter(const Message& m);
  ~FrameWriter();
  FrameWriter(const FrameWriter&) = delete;
  FrameWriter& operator=(const FrameWriter&) = delete;
  const std::string& head() const { return head_; }
  void update(std::span<const std::byte> payload_part);
  // The checksum trailer over head + every part given to update().
  std::array<std::byte, kChecksumBytes> trailer() const;
  // Total wire size of this message.
  uint64_t wire_bytes(uint64_t payload_bytes) const { return head_.size() + payload_bytes + kChecksumBytes; }

 private:
  std::string head_;
  XXH3_state_t* hash_ = nullptr;
};

// Receiver side: an incremental parser fed by a stream of reads. next_buffer() says where
// the next bytes must go (and how many at most); consumed(n) records that n bytes arrived.
// The payload is allocated exactly once, after its size passed the cap check; or, when
// `spool` applies to its size, written to a SpooledPayload through one read-chunk buffer.
class FrameReader {
 public:
  explicit FrameReader(uint64_t max_message_bytes, SpoolPolicy spool = {});
  // Where to read into next; empty once the message is complete.
  std::span<std::byte> next_buffer(std::size_t max_chunk);
  // Records n bytes written into the last next_buffer(). Throws WireError on a bad prefix,
  // an over-cap header or payload, unparsable JSON or a checksum mismatch.
  void consumed(std::size_t n);
  bool done() const { return state_ == State::kDone; }
  // Bytes of the wire message received so far.
  uint64_t received() const { return received_; }
  Message take();  // only when done()

 private:
  enum class State { kPrefix, kHeader, kPayload, kChecksum, kDone };
  void parse_prefix();
  void parse_header();
  void check_sum();

  uint64_t max_message_bytes_;
  State state_ = State::kPrefix;
  std::array<std::byte, kPrefixBytes> prefix_{};
  std::string header_json_;
  std::array<std::byte, kChecksumBytes> sum_{};
  std::size_t have_ = 0;  // bytes of the current section received
  uint64_t received_ = 0;
  uint64_t payload_bytes_ = 0;  // declared payload size (msg_.payload grows to it as bytes arrive)
  SpoolPolicy spool_;
  std::shared_ptr<SpooledPayload> spooled_;  // this message's payload file, when spooled
  Bytes staging_;                            // spooled: the read chunk on its way to the file
  Message msg_;
  XXH3_state_t* hash_ = nullptr;

 public:
  ~FrameReader();
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;
};

// Bounds on a JSON document from a peer, enforced WHILE parsing (a deep document is refused
// before it is built: nlohmann's dump() and destructor recurse).
struct JsonLimits {
  int max_depth = 16;                  // nesting levels of objects/arrays
  std::size_t max_values = 4096;       // keys + values in the whole document
  std::size_t max_bytes = kMaxHeaderBytes;
};
// Parses `text` under `limits`; WireError naming the violated limit or "not valid JSON".
nlohmann::json parse_bounded_json(std::string_view text, const JsonLimits& limits = {});

// Whole-message helpers (small messages, tests, fuzzing): encode to one buffer / decode one.
Bytes encode_message(const Message& m);
// `spool`: as a connection's (a spooled payload stays in Message::spooled).
Message decode_message(std::span<const std::byte> wire, uint64_t max_message_bytes, const SpoolPolicy& spool = {});

}  // namespace longhaul::transport
