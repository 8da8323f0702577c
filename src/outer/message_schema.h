// The schema of every protocol message (protocol.h), one typed struct and one parse function
// per message type: the only place where a peer's header fields are read. Each field is checked
// for presence, JSON type and range before use (integers that fit, finite numbers, bounded
// strings, known enumerations); a violation throws ProtocolError whose what() is
// "message 'TYPE': field 'KEY': expected WHAT, got VALUE" (VALUE shortened to 64 characters),
// and whose field() names the field, for metrics labels.
//
// Headers reach this code already bounded by transport::parse_bounded_json (depth, values, bytes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "outer/protocol.h"

namespace longhaul::outer::protocol {

inline constexpr std::size_t kMaxIdBytes = 64;        // site ids, certificate CNs
inline constexpr std::size_t kMaxRunIdBytes = 128;
inline constexpr std::size_t kMaxReasonBytes = 4096;  // free-text reasons
inline constexpr int64_t kMaxRound = int64_t{1} << 40;
inline constexpr int64_t kMaxInnerSteps = 10'000'000;
inline constexpr int kMaxFragments = 1024;
inline constexpr int kMaxZstdLevel = 22;

// Reads fields of one header with the checks above. `type` names the message in errors.
class FieldReader {
 public:
  FieldReader(const nlohmann::json& header, const char* type);
  bool has(const char* key) const;
  std::string str(const char* key, std::size_t max_bytes) const;
  // [A-Za-z0-9._-]{1,64}: ids that appear in logs, file names and metric labels.
  std::string id(const char* key) const;
  int64_t i64(const char* key, int64_t lo, int64_t hi) const;
  double num(const char* key, double lo, double hi) const;  // finite, in [lo, hi]
  bool boolean(const char* key) const;
  uint64_t hex64(const char* key) const;                     // 16 lowercase hex digits
  std::string one_of(const char* key, const std::vector<std::string>& choices) const;
  const nlohmann::json& object(const char* key) const;
  FieldReader sub(const char* key) const;  // a nested object, errors say "KEY.SUB"
  [[noreturn]] void fail(const char* key, const std::string& expected) const;

 private:
  const nlohmann::json& at(const char* key) const;
  const nlohmann::json& h_;
  std::string type_;
  std::string prefix_;  // "train." for nested objects
};

// ---- site -> coordinator

// What a site declares at join about its training and data layout. It bounds the weight of its
// uploads: tokens per inner step = batch_size · grad_accum · the model's block_size (the model,
// block_size included, is the coordinator's).
struct SiteDeclaration {
  int64_t batch_size = 0, grad_accum = 0;
  int64_t num_shards = 1, shard_index = 0;
  double val_fraction = 0;
  int64_t tokens_per_step(int64_t block_size) const { return batch_size * grad_accum * block_size; }
  nlohmann::json to_json() const;
};

struct Hello {
  std::string site;
  int protocol = 0;
  uint64_t manifest_hash = 0;
  int64_t round = -1;  // the round of the site's θ (-1: none)
  SiteDeclaration decl;
};
Hello parse_hello(const nlohmann::json& h);

// Per-round measurements a site reports with its upload (all optional, seconds >= 0).
struct SiteTiming {
  std::optional<double> compute_s;  // inner steps, wall seconds
  std::optional<double> wait_s;     // upload sent -> next round_start, previous round
  std::optional<double> download_s;  // previous round's round_result: first to last byte, seconds
  std::optional<double> download_bytes;  // that round_result's payload bytes
  // Seconds from the site's previous upload to this one (its whole cycle: wait, download,
  // evaluation, compute); utilisation = compute_s / cycle_s. Absent on a site's first upload.
  std::optional<double> cycle_s;
};

struct Upload {
  RoundTag tag;
  double tokens = 0;   // tokens trained this round (> 0)
  int64_t steps = 0;   // inner steps run this round
  std::optional<double> train_loss;  // mean inner loss (null/absent when not finite)
  std::optional<double> eval_loss;   // θ_r on the site's held-out split, nats/token
  int64_t eval_tokens = 0;           // tokens that evaluation covered (its weight)
  SiteTiming timing;
};
Upload parse_upload(const nlohmann::json& h);

struct Resync {
  RoundTag tag;
  std::string reason;
};
Resync parse_resync(const nlohmann::json& h);

// ---- coordinator -> site

struct Welcome {
  std::string run_id;
  int protocol = 0;
  int64_t round = 0;
  nlohmann::json model;  // GptConfig JSON (validated by its own parser)
  uint64_t manifest_hash = 0, param_hash = 0;
  // Streaming DiLoCo (absent from the header: 1, 0, 0, 0): the run's fixed schedule.
  int fragments = 1;
  int64_t overlap_steps = 0;
  double merge_alpha = 0;
  uint64_t layout_hash = 0;  // FragmentLayout::hash(): the site derives the same layout or leaves
};
Welcome parse_welcome(const nlohmann::json& h);

struct RoundStart {
  int64_t round = 0;
  int64_t inner_steps = 0;  // this site's steps since the previous exchange (streaming: its gap)
  int fragment = 0;         // the fragment this round exchanges (fragment_schedule.h)
  std::string upload_encoding, download_encoding;
  int zstd_level = 0;  // the site's upload: 0 = no lossless stage, 1..22 = shuffle + zstd (absent: 0)
  // The inner lr schedule's position at the round's first step (the run's reference inner
  // steps so far) and its advance per local step (H / H_k). Absent: the site's own step count.
  std::optional<int64_t> schedule_step;
  double schedule_stride = 1;
  double deadline_s = 0;
  uint64_t param_hash = 0;
  bool have_upload = false;  // the coordinator already holds this site's upload for the round
  // Whether the site evaluates θ_r on its held-out split this round (the coordinator's
  // eval.every_rounds; absent: true, as before the field existed).
  bool evaluate = true;
};
RoundStart parse_round_start(const nlohmann::json& h);

struct UploadAck {
  int64_t round = 0;
  std::string status;  // accepted | rejected | late | duplicate
  std::string reason;
};
UploadAck parse_upload_ack(const nlohmann::json& h);

struct RoundResult {
  int64_t round = 0, next_round = 0;
  int fragment = 0;  // whose slice the payload updates
  bool applied = false;
  std::vector<std::string> contributors;
  std::vector<std::string> stale_contributors;  // their previous-round uploads counted in this one
  uint64_t param_hash = 0;
};
RoundResult parse_round_result(const nlohmann::json& h);

std::string parse_refuse_reason(const nlohmann::json& h);
int64_t parse_run_complete(const nlohmann::json& h);  // rounds

// `s` with control characters escaped and cut to max_bytes: safe to put in one log line.
std::string printable(const std::string& s, std::size_t max_bytes = 256);

}  // namespace longhaul::outer::protocol
