#include "outer/message_schema.h"

#include <cmath>
#include <sstream>

namespace longhaul::outer::protocol {

using json = nlohmann::json;

namespace {

std::string shown(const json& v) {
  // The value is bounded in depth and size by the transport, so dump() is safe here.
  std::string s = v.dump();
  return s.size() > 64 ? s.substr(0, 64) + "..." : s;
}

const char* kind(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "an invalid value";
  }
}

RoundTag read_tag(const FieldReader& r) {
  RoundTag t;
  t.run_id = r.str("run_id", kMaxRunIdBytes);
  t.round = r.i64("round", 0, kMaxRound);
  t.site = r.id("site");
  t.fragment = static_cast<int>(r.i64("fragment", 0, kMaxFragments - 1));
  return t;
}

std::optional<double> optional_seconds(const FieldReader& r, const char* key) {
  if (!r.has(key)) return std::nullopt;
  return r.num(key, 0, 1e9);
}

}  // namespace

FieldReader::FieldReader(const json& header, const char* type) : h_(header), type_(type) {
  if (!h_.is_object())
    throw ProtocolError("message '" + type_ + "': header is " + kind(h_) + ", expected an object",
                        type_ + ".header");
}

const json& FieldReader::at(const char* key) const {
  auto it = h_.find(key);
  if (it == h_.end()) fail(key, "a value (field missing)");
  return *it;
}

void FieldReader::fail(const char* key, const std::string& expected) const {
  auto it = h_.find(key);
  std::string got = it == h_.end() ? "nothing" : std::string(kind(*it)) + " " + shown(*it);
  throw ProtocolError("message '" + type_ + "': field '" + prefix_ + key + "': expected " +
                          expected + ", got " + got,
                      type_ + "." + prefix_ + key);
}

bool FieldReader::has(const char* key) const {
  auto it = h_.find(key);
  return it != h_.end() && !it->is_null();
}

std::string FieldReader::str(const char* key, std::size_t max_bytes) const {
  const json& v = at(key);
  if (!v.is_string() || v.get_ref<const std::string&>().size() > max_bytes)
    fail(key, "a string of at most " + std::to_string(max_bytes) + " bytes");
  return v.get<std::string>();
}

std::string FieldReader::id(const char* key) const {
  const json& v = at(key);
  bool ok = v.is_string();
  if (ok) {
    const auto& s = v.get_ref<const std::string&>();
    ok = !s.empty() && s.size() <= kMaxIdBytes;
    for (char c : s)
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-');
  }
  if (!ok) fail(key, "an id of 1-64 characters [A-Za-z0-9._-]");
  return v.get<std::string>();
}

int64_t FieldReader::i64(const char* key, int64_t lo, int64_t hi) const {
  const json& v = at(key);
  // number_unsigned above INT64_MAX and every float (even 3.0) are refused: counts are integers.
  bool ok = v.is_number_integer() && (!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t(INT64_MAX));
  int64_t x = ok ? v.get<int64_t>() : 0;
  if (!ok || x < lo || x > hi)
    fail(key, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

double FieldReader::num(const char* key, double lo, double hi) const {
  const json& v = at(key);
  double x = v.is_number() ? v.get<double>() : std::nan("");
  if (!std::isfinite(x) || x < lo || x > hi) {
    std::ostringstream os;
    os << "a finite number in [" << lo << ", " << hi << "]";
    fail(key, os.str());
  }
  return x;
}

bool FieldReader::boolean(const char* key) const {
  const json& v = at(key);
  if (!v.is_boolean()) fail(key, "a boolean");
  return v.get<bool>();
}

uint64_t FieldReader::hex64(const char* key) const {
  const json& v = at(key);
  bool ok = v.is_string() && v.get_ref<const std::string&>().size() == 16;
  uint64_t x = 0;
  if (ok)
    for (char c : v.get_ref<const std::string&>()) {
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      ok = ok && d >= 0;
      x = x << 4 | static_cast<uint64_t>(d < 0 ? 0 : d);
    }
  if (!ok) fail(key, "16 lowercase hex digits");
  return x;
}

std::string FieldReader::one_of(const char* key, const std::vector<std::string>& choices) const {
  const json& v = at(key);
  if (v.is_string())
    for (const auto& c : choices)
      if (v.get_ref<const std::string&>() == c) return c;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : "|") + c;
  fail(key, "one of " + list);
}

const json& FieldReader::object(const char* key) const {
  const json& v = at(key);
  if (!v.is_object()) fail(key, "an object");
  return v;
}

FieldReader FieldReader::sub(const char* key) const {
  FieldReader r(object(key), type_.c_str());
  r.prefix_ = prefix_ + key + ".";
  return r;
}

json SiteDeclaration::to_json() const {
  return {{"batch_size", batch_size},   {"grad_accum", grad_accum},
          {"num_shards", num_shards},   {"shard_index", shard_index},
          {"val_fraction", val_fraction}};
}

Hello parse_hello(const json& h) {
  FieldReader r(h, kHello);
  Hello m;
  m.site = r.id("site");
  m.protocol = static_cast<int>(r.i64("protocol", 0, 1 << 20));
  m.manifest_hash = r.hex64("manifest_hash");
  m.round = r.i64("round", -1, kMaxRound);
  FieldReader t = r.sub("train");
  m.decl.batch_size = t.i64("batch_size", 1, 1 << 20);
  m.decl.grad_accum = t.i64("grad_accum", 1, 1 << 16);
  FieldReader d = r.sub("data");
  m.decl.num_shards = d.i64("num_shards", 1, 1 << 20);
  m.decl.shard_index = d.i64("shard_index", 0, m.decl.num_shards - 1);
  m.decl.val_fraction = d.num("val_fraction", 0, 0.5);
  return m;
}

Upload parse_upload(const json& h) {
  FieldReader r(h, kUpload);
  Upload m;
  m.tag = read_tag(r);
  m.tokens = r.num("tokens", 1, 1e15);
  m.steps = r.i64("steps", 1, kMaxInnerSteps);
  if (r.has("train_loss")) m.train_loss = r.num("train_loss", -1e30, 1e30);
  if (r.has("eval_loss")) {
    m.eval_loss = r.num("eval_loss", 0, 1e6);
    m.eval_tokens = r.i64("eval_tokens", 1, int64_t{1} << 40);
  }
  m.timing.compute_s = optional_seconds(r, "compute_s");
  m.timing.wait_s = optional_seconds(r, "wait_s");
  m.timing.download_s = optional_seconds(r, "download_s");
  if (r.has("download_bytes")) m.timing.download_bytes = r.num("download_bytes", 0, 1e13);
  m.timing.cycle_s = optional_seconds(r, "cycle_s");
  if (r.has("idempotency_key")) r.str("idempotency_key", 256);
  return m;
}

Resync parse_resync(const json& h) {
  FieldReader r(h, kResync);
  Resync m;
  m.tag = read_tag(r);
  m.reason = r.has("reason") ? r.str("reason", kMaxReasonBytes) : "";
  return m;
}

Welcome parse_welcome(const json& h) {
  FieldReader r(h, kWelcome);
  Welcome m;
  m.run_id = r.str("run_id", kMaxRunIdBytes);
  m.protocol = static_cast<int>(r.i64("protocol", 0, 1 << 20));
  m.round = r.i64("round", 0, kMaxRound);
  m.model = r.object("model");
  m.manifest_hash = r.hex64("manifest_hash");
  m.param_hash = r.hex64("param_hash");
  if (r.has("fragments")) {  // streaming DiLoCo; absent: one fragment, no overlap
    m.fragments = static_cast<int>(r.i64("fragments", 1, kMaxFragments));
    m.overlap_steps = r.i64("overlap_steps", 0, kMaxInnerSteps);
    m.merge_alpha = r.num("merge_alpha", 0.0, 0.99);
    m.layout_hash = r.hex64("layout_hash");
  }
  return m;
}

RoundStart parse_round_start(const json& h) {
  static const std::vector<std::string> kEncodings = {"fp32", "bf16", "fp16", "int8", "int4"};
  FieldReader r(h, kRoundStart);
  RoundStart m;
  m.round = r.i64("round", 0, kMaxRound);
  m.inner_steps = r.i64("inner_steps", 1, kMaxInnerSteps);
  if (r.has("fragment")) m.fragment = static_cast<int>(r.i64("fragment", 0, kMaxFragments - 1));
  m.upload_encoding = r.one_of("upload_encoding", kEncodings);
  m.download_encoding = r.one_of("download_encoding", kEncodings);
  if (r.has("zstd_level")) m.zstd_level = static_cast<int>(r.i64("zstd_level", 0, kMaxZstdLevel));
  if (r.has("schedule_step")) {
    m.schedule_step = r.i64("schedule_step", 0, kMaxRound);
    m.schedule_stride = r.num("schedule_stride", 1.0, static_cast<double>(kMaxInnerSteps));  // H/H_k >= 1
  }
  m.deadline_s = r.num("deadline_s", 0, 1e9);
  m.param_hash = r.hex64("param_hash");
  m.have_upload = r.has("have_upload") && r.boolean("have_upload");
  m.evaluate = !r.has("evaluate") || r.boolean("evaluate");
  return m;
}

UploadAck parse_upload_ack(const json& h) {
  FieldReader r(h, kUploadAck);
  UploadAck m;
  m.round = r.i64("round", -1, kMaxRound);
  m.status = r.one_of("status", {kAccepted, kRejected, kLate, kDuplicate});
  m.reason = r.has("reason") ? r.str("reason", kMaxReasonBytes) : "";
  return m;
}

RoundResult parse_round_result(const json& h) {
  FieldReader r(h, kRoundResult);
  RoundResult m;
  m.round = r.i64("round", 0, kMaxRound);
  m.next_round = r.i64("next_round", m.round + 1, m.round + 1);
  if (r.has("fragment")) m.fragment = static_cast<int>(r.i64("fragment", 0, kMaxFragments - 1));
  m.applied = r.boolean("applied");
  m.param_hash = r.hex64("param_hash");
  auto ids = [&](const char* key, std::vector<std::string>& out) {
    if (!r.has(key)) return;
    const json& c = h.at(key);
    if (!c.is_array() || c.size() > 4096) r.fail(key, "an array of at most 4096 site ids");
    for (const auto& x : c) {
      if (!x.is_string() || x.get_ref<const std::string&>().size() > kMaxIdBytes) r.fail(key, "an array of site ids");
      out.push_back(x.get<std::string>());
    }
  };
  ids("contributors", m.contributors);
  ids("stale_contributors", m.stale_contributors);
  return m;
}

std::string parse_refuse_reason(const json& h) {
  FieldReader r(h, kRefuse);
  return r.str("reason", kMaxReasonBytes);
}

int64_t parse_run_complete(const json& h) {
  FieldReader r(h, kRunComplete);
  return r.i64("rounds", 0, kMaxRound);
}

std::string printable(const std::string& s, std::size_t max_bytes) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace longhaul::outer::protocol
