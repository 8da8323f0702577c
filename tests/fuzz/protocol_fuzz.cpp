// libFuzzer target for the coordinator's message handling, without the network and LibTorch:
// an input is a sequence of events from up to 8 sites — wire messages (decoded with the
// transport's frame reader and its bounded JSON parser, then validated by the per-type schema)
// and round-control events (open / close a round) — driven through the round state machine the
// coordinator uses (RoundState), with the coordinator's acceptance rule for uploads. Any crash,
// sanitizer report, uncaught exception other than the typed protocol/wire errors, or broken
// invariant (__builtin_trap) is a bug.
//
// Input layout, repeated: [op:1][site:1][len:2 LE][len bytes]. op % 4: 0 = a wire message
// (len bytes), 1 = a message built from a JSON header (len bytes of JSON text, type chosen by
// site byte), 2 = open the next round with the sites seen so far, 3 = close the open round.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <span>
#include <string>

#include "outer/message_schema.h"
#include "outer/round_state.h"
#include "transport/message.h"

namespace {
using namespace longhaul;
using outer::RoundState;
using outer::UploadVerdict;
namespace proto = outer::protocol;

const char* kTypes[] = {proto::kHello, proto::kUpload, proto::kResync, proto::kWelcome, proto::kRoundStart,
                        proto::kUploadAck, proto::kRoundResult, proto::kRefuse, proto::kRunComplete, "bogus"};

struct Model {
  RoundState round;
  int64_t next_round = 0;
  std::set<std::string> joined;
  std::map<int64_t, int> accepted_per_round;

  void on_message(const std::string& site, const transport::Message& m) {
    try {
      if (m.type == proto::kHello) {
        auto h = proto::parse_hello(m.header);
        if (h.decl.tokens_per_step(64) <= 0) __builtin_trap();
        if (h.decl.shard_index < 0 || h.decl.shard_index >= h.decl.num_shards) __builtin_trap();
        joined.insert(site);
        if (round.is_open()) round.add_participant(site);
      } else if (m.type == proto::kUpload) {
        auto u = proto::parse_upload(m.header);
        if (!(u.tokens >= 1) || u.steps < 1 || u.tag.fragment < 0) __builtin_trap();
        UploadVerdict v = round.classify(site, u.tag.round);
        if (v == UploadVerdict::kFuture && u.tag.round <= round.round()) __builtin_trap();
        if (v == UploadVerdict::kStale) {  // once per site, only for the round just closed
          if (u.tag.round != round.round() - 1) __builtin_trap();
          round.record_stale(site, (m.payload.size() & 1) == 0);
          if (round.classify(site, u.tag.round) != UploadVerdict::kDuplicate) __builtin_trap();
        }
        if (v == UploadVerdict::kAccept) {
          const bool ok = (m.payload.size() & 1) == 0;  // stands in for the payload checks
          round.record(site, ok);
          if (round.classify(site, u.tag.round) != UploadVerdict::kDuplicate) __builtin_trap();
          accepted_per_round[u.tag.round] += ok;
          if (accepted_per_round[u.tag.round] > static_cast<int>(round.participants().size())) __builtin_trap();
        }
      } else if (m.type == proto::kResync) {
        proto::parse_resync(m.header);
      } else if (m.type == proto::kWelcome) {
        proto::parse_welcome(m.header);
      } else if (m.type == proto::kRoundStart) {
        proto::parse_round_start(m.header);
      } else if (m.type == proto::kUploadAck) {
        proto::parse_upload_ack(m.header);
      } else if (m.type == proto::kRoundResult) {
        auto r = proto::parse_round_result(m.header);
        if (r.next_round != r.round + 1) __builtin_trap();
      } else if (m.type == proto::kRefuse) {
        proto::parse_refuse_reason(m.header);
      } else if (m.type == proto::kRunComplete) {
        proto::parse_run_complete(m.header);
      }
      proto::printable(m.type);
    } catch (const proto::ProtocolError& e) {
      if (e.label().empty()) __builtin_trap();
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Model model;
  size_t pos = 0;
  int events = 0;
  while (pos + 4 <= size && events++ < 256) {
    const uint8_t op = data[pos], site_byte = data[pos + 1];
    const size_t len = std::min<size_t>(data[pos + 2] | (data[pos + 3] << 8), size - pos - 4);
    const auto* body = reinterpret_cast<const std::byte*>(data + pos + 4);
    pos += 4 + len;
    const std::string site = "site-" + std::to_string(site_byte % 8);
    switch (op % 4) {
      case 0:
        try {
          // Every other site's payloads go through the disk spool, as the coordinator's do.
          static const transport::SpoolPolicy spool{std::filesystem::temp_directory_path(), 1};
          transport::Message m = transport::decode_message({body, len}, 1 << 20,
                                                           site_byte & 1 ? spool : transport::SpoolPolicy{});
          transport::load_payload(m);
          model.on_message(site, std::move(m));
        } catch (const transport::WireError&) {
        }
        break;
      case 1:
        try {
          transport::Message m;
          m.type = kTypes[site_byte % 10];
          m.header = transport::parse_bounded_json({reinterpret_cast<const char*>(body), len});
          if (!m.header.is_object()) break;
          // Round-trip through the wire format as the channel would.
          model.on_message(site, transport::decode_message(transport::encode_message(m), 1 << 20));
        } catch (const transport::WireError&) {
        }
        break;
      case 2:
        if (!model.round.is_open()) {
          model.round.open(model.next_round, model.joined, outer::Clock::now(), 1);
        }
        break;
      case 3:
        if (model.round.is_open()) {
          model.round.close();
          model.next_round = model.round.round() + 1;
        }
        break;
    }
  }
  return 0;
}
