// The protocol schema: every field checked for presence, JSON type and range, errors that name
// the message, the field and what was expected, and labels for metrics.
#include <gtest/gtest.h>

#include "outer/message_schema.h"

namespace longhaul::outer::protocol {
namespace {

using json = nlohmann::json;

json good_hello() {
  return {{"site", "site-a"},
          {"protocol", kVersion},
          {"manifest_hash", "00000000000000ff"},
          {"round", -1},
          {"train", {{"batch_size", 4}, {"grad_accum", 2}}},
          {"data", {{"num_shards", 3}, {"shard_index", 1}, {"val_fraction", 0.1}}}};
}

std::string error_of(const std::function<void()>& f, std::string* label = nullptr) {
  try {
    f();
  } catch (const ProtocolError& e) {
    if (label) *label = e.label();
    return e.what();
  }
  return "";
}

TEST(MessageSchema, ParsesAGoodHello) {
  Hello h = parse_hello(good_hello());
  EXPECT_EQ(h.site, "site-a");
  EXPECT_EQ(h.manifest_hash, 0xffu);
  EXPECT_EQ(h.decl.tokens_per_step(32), 4 * 2 * 32);
  EXPECT_EQ(h.decl.shard_index, 1);
}

TEST(MessageSchema, WrongTypesAndRangesNameTheField) {
  struct Case {
    std::function<void(json&)> mutate;
    const char* field;
    const char* expected;
  };
  std::vector<Case> cases = {
      {[](json& h) { h["site"] = 42; }, "field 'site'", "an id"},
      {[](json& h) { h["site"] = "a b"; }, "field 'site'", "an id"},
      {[](json& h) { h.erase("round"); }, "field 'round'", "field missing"},
      {[](json& h) { h["round"] = 1.5; }, "field 'round'", "an integer"},
      {[](json& h) { h["round"] = uint64_t(1) << 63; }, "field 'round'", "an integer"},
      {[](json& h) { h["manifest_hash"] = "XYZ"; }, "field 'manifest_hash'", "16 lowercase hex"},
      {[](json& h) { h["train"] = "x"; }, "field 'train'", "an object"},
      {[](json& h) { h["train"]["batch_size"] = 0; }, "field 'train.batch_size'", "[1, "},
      {[](json& h) { h["data"]["shard_index"] = 3; }, "field 'data.shard_index'", "[0, 2]"},
      {[](json& h) { h["data"]["val_fraction"] = "0.1"; }, "field 'data.val_fraction'", "a finite number"},
  };
  for (auto& c : cases) {
    json h = good_hello();
    c.mutate(h);
    std::string label;
    const std::string what = error_of([&] { parse_hello(h); }, &label);
    EXPECT_NE(what.find("message 'hello'"), std::string::npos) << what;
    EXPECT_NE(what.find(c.field), std::string::npos) << what;
    EXPECT_NE(what.find(c.expected), std::string::npos) << what;
    EXPECT_EQ(label.rfind("hello.", 0), 0u) << label;
  }
  EXPECT_NE(error_of([] { parse_hello(json::array()); }).find("header is an array"), std::string::npos);
}

TEST(MessageSchema, UploadBoundsTokensStepsAndTimings) {
  json u = {{"run_id", "run-1"}, {"round", 3},     {"site", "site-a"},  {"fragment", 0},
            {"tokens", 512},     {"steps", 4},     {"train_loss", 2.5}, {"compute_s", 1.25}};
  Upload p = parse_upload(u);
  EXPECT_EQ(p.tag.round, 3);
  EXPECT_DOUBLE_EQ(p.tokens, 512);
  EXPECT_DOUBLE_EQ(*p.timing.compute_s, 1.25);
  EXPECT_FALSE(p.timing.wait_s);
  u["cycle_s"] = 4.0;
  u["download_s"] = 0.5;
  u["download_bytes"] = 1000;
  p = parse_upload(u);
  EXPECT_DOUBLE_EQ(*p.timing.cycle_s, 4.0);
  EXPECT_DOUBLE_EQ(*p.timing.download_bytes, 1000);
  u["train_loss"] = nullptr;  // a non-finite loss travels as null
  EXPECT_FALSE(parse_upload(u).train_loss);
  for (auto [key, bad] : std::vector<std::pair<const char*, json>>{
           {"tokens", 0}, {"tokens", "1"}, {"tokens", 1e300}, {"steps", -1}, {"round", -1},
           {"fragment", kMaxFragments}, {"compute_s", -1}, {"run_id", std::string(129, 'r')},
           {"cycle_s", -1}, {"cycle_s", "2"}, {"download_s", 1e12}, {"download_bytes", -1},
           {"download_bytes", 1e14}, {"download_bytes", "9"}}) {
    json v = u;
    v[key] = bad;
    std::string label;
    EXPECT_NE(error_of([&] { parse_upload(v); }, &label).find(std::string("field '") + key + "'"), std::string::npos)
        << key << " = " << bad;
    EXPECT_EQ(label, std::string("upload.") + key);
  }
}

TEST(MessageSchema, SiteSideMessages) {
  json rs = {{"round", 2},           {"inner_steps", 10},   {"upload_encoding", "int8"},
             {"download_encoding", "fp32"}, {"deadline_s", 30.0}, {"param_hash", "0123456789abcdef"}};
  EXPECT_EQ(parse_round_start(rs).inner_steps, 10);
  rs["upload_encoding"] = "int3";
  EXPECT_NE(error_of([&] { parse_round_start(rs); }).find("one of fp32|bf16|fp16|int8|int4"), std::string::npos);
  json rr = {{"round", 2}, {"next_round", 3}, {"applied", true}, {"param_hash", "0123456789abcdef"},
             {"contributors", {"a", "b"}}};
  EXPECT_EQ(parse_round_result(rr).contributors.size(), 2u);
  EXPECT_TRUE(parse_round_result(rr).stale_contributors.empty());
  rr["stale_contributors"] = {"c"};
  EXPECT_EQ(parse_round_result(rr).stale_contributors, std::vector<std::string>{"c"});
  for (const json& bad : {json("c"), json({1}), json({std::string(kMaxIdBytes + 1, 'x')})}) {
    json v = rr;
    v["stale_contributors"] = bad;
    EXPECT_NE(error_of([&] { parse_round_result(v); }).find("field 'stale_contributors'"), std::string::npos) << bad;
  }
  rr["next_round"] = 9;  // a result must advance exactly one round
  EXPECT_NE(error_of([&] { parse_round_result(rr); }).find("field 'next_round'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_upload_ack({{"round", 1}, {"status", "maybe"}}); }).find("field 'status'"),
            std::string::npos);
  EXPECT_EQ(parse_run_complete({{"rounds", 5}}), 5);
}

// round_start "evaluate" (eval.every_rounds at the sites): optional (absent: evaluate, as before
// the field existed), a boolean or the message is refused naming the field.
TEST(MessageSchema, RoundStartEvaluateIsAnOptionalBoolean) {
  json rs = {{"round", 2},           {"inner_steps", 10},   {"upload_encoding", "int8"},
             {"download_encoding", "fp32"}, {"deadline_s", 30.0}, {"param_hash", "0123456789abcdef"}};
  EXPECT_TRUE(parse_round_start(rs).evaluate);
  rs["evaluate"] = false;
  EXPECT_FALSE(parse_round_start(rs).evaluate);
  rs["evaluate"] = true;
  EXPECT_TRUE(parse_round_start(rs).evaluate);
  std::string label;
  rs["evaluate"] = nullptr;  // null reads as absent, as for every optional field
  EXPECT_TRUE(parse_round_start(rs).evaluate);
  for (json bad : {json("false"), json(0), json(1), json::array(), json::object()}) {
    rs["evaluate"] = bad;
    EXPECT_NE(error_of([&] { parse_round_start(rs); }, &label).find("field 'evaluate'"), std::string::npos) << bad.dump();
    EXPECT_EQ(label, "round_start.evaluate");
  }
}

TEST(MessageSchema, RoundStartZstdLevelAndScheduleAreOptionalAndBounded) {
  json rs = {{"round", 2},           {"inner_steps", 10},   {"upload_encoding", "int8"},
             {"download_encoding", "fp32"}, {"deadline_s", 30.0}, {"param_hash", "0123456789abcdef"}};
  EXPECT_EQ(parse_round_start(rs).zstd_level, 0);  // absent: no lossless stage
  rs["zstd_level"] = 3;
  EXPECT_EQ(parse_round_start(rs).zstd_level, 3);
  rs["zstd_level"] = kMaxZstdLevel;
  EXPECT_EQ(parse_round_start(rs).zstd_level, kMaxZstdLevel);
  std::string label;
  for (json bad : {json(23), json(-1), json("3"), json(2.5), json(int64_t{1} << 40)}) {
    rs["zstd_level"] = bad;
    EXPECT_NE(error_of([&] { parse_round_start(rs); }, &label).find("field 'zstd_level': expected an integer in [0, 22]"),
              std::string::npos)
        << bad.dump();
    EXPECT_EQ(label, "round_start.zstd_level");
  }
  rs["zstd_level"] = 0;
  EXPECT_FALSE(parse_round_start(rs).schedule_step);  // absent: the site's own step count
  rs["schedule_step"] = 400;
  rs["schedule_stride"] = 2.5;
  EXPECT_EQ(*parse_round_start(rs).schedule_step, 400);
  EXPECT_EQ(parse_round_start(rs).schedule_stride, 2.5);
  for (json bad : {json(0.5), json(0), json(-1), json("2"), json(1e300)}) {  // H/H_k >= 1
    rs["schedule_stride"] = bad;
    EXPECT_NE(error_of([&] { parse_round_start(rs); }, &label).find("field 'schedule_stride'"), std::string::npos)
        << bad.dump();
  }
  rs["schedule_stride"] = 1.0;
  rs["schedule_step"] = -5;
  EXPECT_NE(error_of([&] { parse_round_start(rs); }).find("field 'schedule_step'"), std::string::npos);
  rs.erase("schedule_stride");
  rs["schedule_step"] = 5;
  EXPECT_NE(error_of([&] { parse_round_start(rs); }).find("field 'schedule_stride'"), std::string::npos);
}

// Streaming DiLoCo: the welcome's fixed schedule and the fragment of round_start/round_result
// are optional (absent: one fragment, no overlap) and bounded.
TEST(MessageSchema, StreamingFieldsAreOptionalAndBounded) {
  json w = {{"run_id", "run-1"}, {"protocol", kVersion}, {"round", 4}, {"model", json::object()},
            {"manifest_hash", "00000000000000ff"}, {"param_hash", "0123456789abcdef"}};
  EXPECT_EQ(parse_welcome(w).fragments, 1);
  EXPECT_EQ(parse_welcome(w).overlap_steps, 0);
  w["fragments"] = 4;
  w["overlap_steps"] = 2;
  w["merge_alpha"] = 0.5;
  w["layout_hash"] = "00000000000000aa";
  const Welcome got = parse_welcome(w);
  EXPECT_EQ(got.fragments, 4);
  EXPECT_EQ(got.overlap_steps, 2);
  EXPECT_EQ(got.merge_alpha, 0.5);
  EXPECT_EQ(got.layout_hash, 0xaau);
  for (const auto& [key, bad] : std::vector<std::pair<std::string, json>>{{"fragments", 0},
                                                                          {"fragments", kMaxFragments + 1},
                                                                          {"overlap_steps", -1},
                                                                          {"merge_alpha", 1.0},
                                                                          {"merge_alpha", "0.5"},
                                                                          {"layout_hash", 7}}) {
    json v = w;
    v[key] = bad;
    EXPECT_NE(error_of([&] { parse_welcome(v); }).find("field '" + key + "'"), std::string::npos) << key << bad;
  }
  json v = w;
  v.erase("layout_hash");  // a schedule without its layout hash cannot be checked
  EXPECT_NE(error_of([&] { parse_welcome(v); }).find("field 'layout_hash'"), std::string::npos);

  json rs = {{"round", 2},           {"inner_steps", 10},   {"upload_encoding", "int8"},
             {"download_encoding", "fp32"}, {"deadline_s", 30.0}, {"param_hash", "0123456789abcdef"}};
  EXPECT_EQ(parse_round_start(rs).fragment, 0);
  rs["fragment"] = 3;
  EXPECT_EQ(parse_round_start(rs).fragment, 3);
  json rr = {{"round", 2}, {"next_round", 3}, {"applied", true}, {"param_hash", "0123456789abcdef"}, {"fragment", 1}};
  EXPECT_EQ(parse_round_result(rr).fragment, 1);
  for (json bad : {json(-1), json(kMaxFragments), json("1"), json(1.5)}) {
    rs["fragment"] = bad;
    rr["fragment"] = bad;
    EXPECT_NE(error_of([&] { parse_round_start(rs); }).find("field 'fragment'"), std::string::npos) << bad;
    EXPECT_NE(error_of([&] { parse_round_result(rr); }).find("field 'fragment'"), std::string::npos) << bad;
  }
}

TEST(MessageSchema, PrintableEscapesControlCharactersAndCuts) {
  EXPECT_EQ(printable("a\nb\x01"), "a\\x0ab\\x01");
  EXPECT_EQ(printable(std::string(10, 'x'), 4), "xxxx...");
}

}  // namespace
}  // namespace longhaul::outer::protocol
