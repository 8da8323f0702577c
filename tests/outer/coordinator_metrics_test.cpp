// The /metrics text: every sample has HELP/TYPE lines, and hostile site ids stay valid labels.
#include "outer/coordinator_metrics.h"

#include <gtest/gtest.h>

#include <sstream>

namespace longhaul::outer {
namespace {

TEST(CoordinatorMetrics, EverySampleIsDeclaredAndLabelsAreEscaped) {
  CoordinatorMetrics m;
  m.rounds_total = 7;
  m.last_round_duration_s = 1.5;
  m.sites_connected = 2;
  m.rejected_uploads_total = 1;
  m.sites["site-a"] = {100, 200};
  m.sites["we\"ird\\id\nx"] = {3, 4};
  const std::string text = render_prometheus(m);
  EXPECT_NE(text.find("longhaul_rounds_total 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("longhaul_bytes_received_total{site=\"site-a\"} 100\n"), std::string::npos) << text;
  EXPECT_NE(text.find("longhaul_bytes_sent_total{site=\"we\\\"ird\\\\id\\nx\"} 4\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("longhaul_eval_loss"), std::string::npos) << "no eval yet: no eval metric";

  std::istringstream lines(text);
  std::string line, declared;
  int samples = 0;
  while (std::getline(lines, line)) {
    ASSERT_FALSE(line.empty());
    if (line.rfind("# TYPE ", 0) == 0) declared = line.substr(7, line.find(' ', 7) - 7);
    if (line[0] == '#') continue;
    ++samples;
    EXPECT_EQ(line.rfind(declared, 0), 0u) << "sample without its TYPE line: " << line;
  }
  EXPECT_EQ(samples, 4 + 2 * 2);

  m.eval_loss = 3.25;
  EXPECT_NE(render_prometheus(m).find("longhaul_eval_loss 3.25\n"), std::string::npos);
}

}  // namespace
}  // namespace longhaul::outer
