// The coordinator <-> site protocol: message types and their JSON headers. Payloads are codec
// payloads (transport/codec.h). Every round message carries run id, round, site and fragment
// (fragment 0 = the whole flat vector until streaming DiLoCo splits it), so a retried or late
// message is recognised and applied at most once.
//
//   site                                   coordinator
//   hello {site, protocol, manifest_hash}  ─▶          (manifest_hash 0: no model yet)
//                                          ◀─  welcome {run_id, round, model, manifest_hash,
//                                                       param_hash} + θ (fp32 payload)
//                                              | refuse {reason}  (then close)
//                                          ◀─  round_start {round, inner_steps, encodings,
//                                                           deadline_s, param_hash}
//   upload {round, tokens, ...} + Q(Δ+e)   ─▶
//                                          ◀─  upload_ack {round, status, reason}
//                                          ◀─  round_result {round, next_round, param_hash,
//                                                            applied} + Q(θ_{r+1} − θ_r)
//   resync {round, reason}                 ─▶  (answered by a welcome: the full θ)
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace longhaul::outer::protocol {

inline constexpr int kVersion = 2;  // 2: hello declares the site's training and data layout

inline constexpr const char* kHello = "hello";
inline constexpr const char* kWelcome = "welcome";
inline constexpr const char* kRefuse = "refuse";
inline constexpr const char* kRoundStart = "round_start";
inline constexpr const char* kUpload = "upload";
inline constexpr const char* kUploadAck = "upload_ack";
inline constexpr const char* kRoundResult = "round_result";
inline constexpr const char* kResync = "resync";
inline constexpr const char* kRunComplete = "run_complete";  // every round done: sites exit 0

// A peer sent a message that does not follow this protocol; what() names type and field.
// label() is a short, bounded reason for metrics ("upload.tokens", "unknown_type", ...).
class ProtocolError : public std::runtime_error {
 public:
  explicit ProtocolError(const std::string& what, std::string label = "other")
      : std::runtime_error(what), label_(std::move(label)) {}
  const std::string& label() const { return label_; }

 private:
  std::string label_;
};

// The fields common to all round messages.
struct RoundTag {
  std::string run_id;
  int64_t round = 0;
  std::string site;
  int fragment = 0;
};

// Status values of upload_ack.
inline constexpr const char* kAccepted = "accepted";
inline constexpr const char* kRejected = "rejected";
inline constexpr const char* kLate = "late";
inline constexpr const char* kDuplicate = "duplicate";

// 64-bit hashes travel as 16 hex digits (JSON numbers are doubles in many tools).
inline std::string hex64(uint64_t v) {
  static const char* d = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[i] = d[v & 15];
  return s;
}

}  // namespace longhaul::outer::protocol
