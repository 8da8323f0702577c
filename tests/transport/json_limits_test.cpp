// JSON from peers is bounded while it is parsed: depth, number of values and bytes. A deep
// document is refused before it is built (dump() and the destructor of a deep value recurse),
// so a million '[' cannot crash the process; a message header carrying one is a WireError.
#include <gtest/gtest.h>

#include <string>

#include "transport/message.h"

namespace longhaul::transport {
namespace {

TEST(JsonLimits, DepthValuesAndBytesAreCheckedWhileParsing) {
  EXPECT_EQ(parse_bounded_json(R"({"a":[1,2,{"b":null}]})")["a"][2]["b"], nullptr);
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  try {
    parse_bounded_json(deep, {16, 4096, 1u << 21});
    FAIL() << "a deep document was accepted";
  } catch (const WireError& e) {
    EXPECT_NE(std::string(e.what()).find("nested deeper than 16"), std::string::npos) << e.what();
  }
  std::string wide = "[";
  for (int i = 0; i < 5000; ++i) wide += (i ? ",1" : "1");
  wide += "]";
  EXPECT_THROW(parse_bounded_json(wide), WireError);
  EXPECT_THROW(parse_bounded_json("{\"a\":1}", {16, 4096, 3}), WireError);
  EXPECT_THROW(parse_bounded_json("{\"a\":1e400}"), WireError);  // number overflow
  EXPECT_THROW(parse_bounded_json("{\"a\":"), WireError);
}

TEST(JsonLimits, AMessageWithADeepHeaderIsAWireError) {
  Message m;
  m.type = "hello";
  nlohmann::json nested = nlohmann::json::array();
  for (int i = 0; i < 15; ++i) nested = nlohmann::json::array({nested});
  m.header["x"] = nested;  // 17 levels with the envelope and header objects
  const Bytes wire = encode_message(m);
  try {
    decode_message(wire, 1 << 20);
    FAIL() << "accepted";
  } catch (const WireError& e) {
    EXPECT_NE(std::string(e.what()).find("nested deeper"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longhaul::transport
