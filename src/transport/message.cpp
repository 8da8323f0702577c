#include "transport/message.h"

#include <algorithm>
#include <cstring>

namespace longhaul::transport {
namespace {

template <typename T>
void put_le(std::string& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

template <typename T>
T get_le(const std::byte* p) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(std::to_integer<uint8_t>(p[i])) << (8 * i);
  return v;
}

}  // namespace

nlohmann::json parse_bounded_json(std::string_view text, const JsonLimits& limits) {
  // The callback sees every value as it is parsed, so the limits hold before a deep or wide
  // document exists in memory (nlohmann's parser is iterative; dump() and the destructor of a
  // deep value would recurse, so a deep value must never be built).
  std::size_t values = 0;
  auto check = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if (depth > limits.max_depth)
      throw WireError("JSON nested deeper than " + std::to_string(limits.max_depth) + " levels");
    if ((event == nlohmann::json::parse_event_t::value || event == nlohmann::json::parse_event_t::key) &&
        ++values > limits.max_values)
      throw WireError("JSON has more than " + std::to_string(limits.max_values) + " values");
    return true;
  };
  if (text.size() > limits.max_bytes)
    throw WireError("JSON is " + std::to_string(text.size()) + " bytes, over the cap of " +
                    std::to_string(limits.max_bytes));
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), check, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw WireError("not valid JSON");
  return j;
}

FrameWriter::FrameWriter(const Message& m) {
  nlohmann::json h = {{"type", m.type}, {"payload_bytes", outgoing_payload(m).size()}, {"header", m.header.is_null() ? nlohmann::json::object() : m.header}};
  if (!h["header"].is_object()) throw WireError("message '" + m.type + "': header must be a JSON object");
  const std::string json = h.dump();
  if (json.size() > kMaxHeaderBytes)
    throw WireError("message header is " + std::to_string(json.size()) + " bytes, over the cap of " +
                    std::to_string(kMaxHeaderBytes));
  head_.reserve(kPrefixBytes + json.size());
  put_le<uint32_t>(head_, kWireMagic);
  put_le<uint16_t>(head_, kWireVersion);
  put_le<uint32_t>(head_, static_cast<uint32_t>(json.size()));
  head_ += json;
  hash_ = XXH3_createState();
  XXH3_64bits_reset(hash_);
  XXH3_64bits_update(hash_, head_.data(), head_.size());
}

FrameWriter::~FrameWriter() { XXH3_freeState(hash_); }

void FrameWriter::update(std::span<const std::byte> payload_part) {
  XXH3_64bits_update(hash_, payload_part.data(), payload_part.size());
}

std::array<std::byte, kChecksumBytes> FrameWriter::trailer() const {
  const uint64_t h = XXH3_64bits_digest(hash_);
  std::array<std::byte, kChecksumBytes> out{};
  for (std::size_t i = 0; i < kChecksumBytes; ++i) out[i] = static_cast<std::byte>((h >> (8 * i)) & 0xff);
  return out;
}

void load_payload(Message& m) {
  if (!m.spooled) return;
  m.payload = m.spooled->read();
  m.spooled.reset();
}

FrameReader::FrameReader(uint64_t max_message_bytes, SpoolPolicy spool)
    : max_message_bytes_(max_message_bytes), spool_(std::move(spool)) {
  hash_ = XXH3_createState();
  XXH3_64bits_reset(hash_);
}

FrameReader::~FrameReader() { XXH3_freeState(hash_); }

std::span<std::byte> FrameReader::next_buffer(std::size_t max_chunk) {
  switch (state_) {
    case State::kPrefix:
      return {prefix_.data() + have_, kPrefixBytes - have_};
    case State::kHeader:
      return {reinterpret_cast<std::byte*>(header_json_.data()) + have_, header_json_.size() - have_};
    case State::kPayload:
    {
      // Zero-fill (Bytes value-initializes) only the part about to be written, while it is about
      // to be in cache anyway, instead of the whole payload up front: one DRAM pass less.
      const std::size_t n = std::min<uint64_t>(max_chunk, payload_bytes_ - have_);
      if (spooled_) {
        if (staging_.size() < n) staging_.resize(n);
        return {staging_.data(), n};
      }
      if (msg_.payload.size() < have_ + n) msg_.payload.resize(have_ + n);  // within the reserved capacity
      return {msg_.payload.data() + have_, n};
    }
    case State::kChecksum:
      return {sum_.data() + have_, kChecksumBytes - have_};
    case State::kDone:
      return {};
  }
  return {};
}

void FrameReader::consumed(std::size_t n) {
  received_ += n;
  if (received_ > max_message_bytes_)
    throw WireError("message exceeds the cap of " + std::to_string(max_message_bytes_) + " bytes");
  if (state_ == State::kPayload && spooled_) {
    XXH3_64bits_update(hash_, staging_.data(), n);
    try {
      spooled_->append({staging_.data(), n});
    } catch (const std::runtime_error& e) {
      throw WireError(e.what());  // this connection's message is lost, never the process
    }
  } else if (state_ == State::kPayload) {
    XXH3_64bits_update(hash_, msg_.payload.data() + have_, n);  // hot in cache
  }
  have_ += n;
  switch (state_) {
    case State::kPrefix:
      if (have_ == kPrefixBytes) parse_prefix();
      break;
    case State::kHeader:
      if (have_ == header_json_.size()) parse_header();
      break;
    case State::kPayload:
      if (have_ == payload_bytes_) {
        have_ = 0;
        state_ = State::kChecksum;
      }
      break;
    case State::kChecksum:
      if (have_ == kChecksumBytes) check_sum();
      break;
    case State::kDone:
      throw WireError("bytes after the end of a message");
  }
}

void FrameReader::parse_prefix() {
  const uint32_t magic = get_le<uint32_t>(prefix_.data());
  const uint16_t version = get_le<uint16_t>(prefix_.data() + 4);
  const uint32_t header_len = get_le<uint32_t>(prefix_.data() + 6);
  if (magic != kWireMagic) throw WireError("bad message magic (not a Longhaul channel message)");
  if (version != kWireVersion)
    throw WireError("message format version " + std::to_string(version) + ", expected " +
                    std::to_string(kWireVersion));
  if (header_len > kMaxHeaderBytes)
    throw WireError("message header_len " + std::to_string(header_len) + " over the cap of " +
                    std::to_string(kMaxHeaderBytes));
  if (kPrefixBytes + header_len + kChecksumBytes > max_message_bytes_)
    throw WireError("message header_len " + std::to_string(header_len) + " exceeds the message cap of " +
                    std::to_string(max_message_bytes_));
  XXH3_64bits_update(hash_, prefix_.data(), kPrefixBytes);
  header_json_.assign(header_len, '\0');
  have_ = 0;
  state_ = State::kHeader;
  if (header_len == 0) parse_header();
}

void FrameReader::parse_header() {
  XXH3_64bits_update(hash_, header_json_.data(), header_json_.size());
  nlohmann::json h = parse_bounded_json(header_json_);
  if (!h.is_object()) throw WireError("message header is not a JSON object");
  const auto type = h.find("type");
  const auto pb = h.find("payload_bytes");
  const auto hdr = h.find("header");
  if (type == h.end() || !type->is_string()) throw WireError("message header lacks a string 'type'");
  if (pb == h.end() || !pb->is_number_unsigned()) throw WireError("message header lacks an unsigned 'payload_bytes'");
  if (hdr == h.end() || !hdr->is_object()) throw WireError("message header lacks an object 'header'");
  const uint64_t payload_bytes = pb->get<uint64_t>();
  // Cap check BEFORE allocating: the whole wire message must fit in max_message_bytes.
  const uint64_t fixed = kPrefixBytes + header_json_.size() + kChecksumBytes;
  if (payload_bytes > max_message_bytes_ - fixed)
    throw WireError("message declares a " + std::to_string(payload_bytes) + "-byte payload, over the cap of " +
                    std::to_string(max_message_bytes_) + " bytes per message");
  msg_.type = type->get<std::string>();
  msg_.header = std::move(*hdr);
  if (spool_.applies(payload_bytes)) {
    try {
      spooled_ = std::make_shared<SpooledPayload>(spool_.dir);
    } catch (const std::runtime_error& e) {
      throw WireError(e.what());
    }
  } else {
    msg_.payload.reserve(payload_bytes);  // the one allocation of the payload
  }
  payload_bytes_ = payload_bytes;
  header_json_.clear();
  header_json_.shrink_to_fit();
  have_ = 0;
  state_ = payload_bytes == 0 ? State::kChecksum : State::kPayload;
}

void FrameReader::check_sum() {
  const uint64_t want = get_le<uint64_t>(sum_.data());
  const uint64_t got = XXH3_64bits_digest(hash_);
  if (want != got) throw WireError("message checksum mismatch (corrupted in transit)");
  state_ = State::kDone;
}

Message FrameReader::take() {
  if (state_ != State::kDone) throw WireError("message truncated before its end");
  msg_.spooled = std::move(spooled_);
  return std::move(msg_);
}

Bytes encode_message(const Message& m) {
  FrameWriter w(m);
  const std::span<const std::byte> payload = outgoing_payload(m);
  Bytes out(w.wire_bytes(payload.size()));
  std::memcpy(out.data(), w.head().data(), w.head().size());
  if (!payload.empty()) std::memcpy(out.data() + w.head().size(), payload.data(), payload.size());
  w.update(payload);
  const auto t = w.trailer();
  std::memcpy(out.data() + out.size() - kChecksumBytes, t.data(), kChecksumBytes);
  return out;
}

Message decode_message(std::span<const std::byte> wire, uint64_t max_message_bytes, const SpoolPolicy& spool) {
  FrameReader r(max_message_bytes, spool);
  std::size_t pos = 0;
  while (!r.done()) {
    auto buf = r.next_buffer(wire.size());
    const std::size_t n = std::min(buf.size(), wire.size() - pos);
    if (n == 0) throw WireError("message truncated at byte " + std::to_string(pos));
    std::memcpy(buf.data(), wire.data() + pos, n);
    pos += n;
    r.consumed(n);
  }
  if (pos != wire.size()) throw WireError("trailing bytes after the message");
  return r.take();
}

}  // namespace longhaul::transport
