#include "common/config_reader.h"

#include <gtest/gtest.h>

#include "common/error.h"

using longhaul::ConfigError;
using longhaul::ConfigReader;

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(ConfigReader, ReadsTypedValuesWithDefaults) {
  auto r = ConfigReader::from_string("[optim]\nlr = 0.5\nsteps = 10\nname = \"x\"\n", "t.toml");
  EXPECT_DOUBLE_EQ(r.get_double("optim.lr", 1.0, 0.0, 1.0), 0.5);
  EXPECT_EQ(r.get_int("optim.steps", 1, 1, 100), 10);
  EXPECT_EQ(r.get_int("optim.other", 7, 1, 100), 7);
  EXPECT_EQ(r.get_string("optim.name", ""), "x");
  r.finish();
  EXPECT_NE(r.effective_toml().find("other = 7"), std::string::npos);
}

TEST(ConfigReader, RejectsOutOfRangeNamingFileKeyValue) {
  auto r = ConfigReader::from_string("[optim]\nlr = -1.0\n", "t.toml");
  auto msg = error_of([&] { r.get_double("optim.lr", 1.0, 0.0, 1.0); });
  EXPECT_NE(msg.find("t.toml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("optim.lr"), std::string::npos) << msg;
  EXPECT_NE(msg.find("-1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected a number in [0, 1]"), std::string::npos) << msg;
}

TEST(ConfigReader, RejectsWrongType) {
  auto r = ConfigReader::from_string("[a]\nn = \"ten\"\n", "t.toml");
  auto msg = error_of([&] { r.get_int("a.n", 1, 0, 100); });
  EXPECT_NE(msg.find("got a string"), std::string::npos) << msg;
}

TEST(ConfigReader, RejectsUnknownKey) {
  auto r = ConfigReader::from_string("[a]\nn = 1\ntypo = 2\n", "t.toml");
  r.get_int("a.n", 1, 0, 100);
  auto msg = error_of([&] { r.finish(); });
  EXPECT_NE(msg.find("unknown key 'a.typo'"), std::string::npos) << msg;
}

TEST(ConfigReader, OverridesApplyWithSameChecks) {
  auto r = ConfigReader::from_string("[a]\nn = 1\n", "t.toml", {"a.n=5", "b.s=hello"});
  EXPECT_EQ(r.get_int("a.n", 1, 0, 100), 5);
  EXPECT_EQ(r.get_string("b.s", ""), "hello");
  auto bad = ConfigReader::from_string("[a]\nn = 1\n", "t.toml", {"a.n=500"});
  EXPECT_NE(error_of([&] { bad.get_int("a.n", 1, 0, 100); }).find("a.n"), std::string::npos);
  EXPECT_NE(error_of([] { ConfigReader::from_string("", "t", {"novalue"}); }).find("--set"), std::string::npos);
}

TEST(ConfigReader, EnumAndSyntaxErrors) {
  auto r = ConfigReader::from_string("d = \"gpu\"\n", "t.toml");
  auto msg = error_of([&] { r.get_enum("d", "cpu", {"cpu", "cuda"}); });
  EXPECT_NE(msg.find("one of \"cpu\", \"cuda\""), std::string::npos) << msg;
  auto syn = error_of([] { ConfigReader::from_string("a = [1,\n", "bad.toml"); });
  EXPECT_NE(syn.find("bad.toml:"), std::string::npos) << syn;
  EXPECT_NE(error_of([] { ConfigReader::from_file("/nonexistent/x.toml"); }).find("not found"), std::string::npos);
}
