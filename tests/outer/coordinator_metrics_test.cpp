// The /metrics text: every sample has HELP/TYPE lines, hostile site ids stay valid labels,
// per-site status fields become counters or gauges, round phases histograms with cumulative
// buckets, and process metrics come from /proc/self.
#include "outer/coordinator_metrics.h"

#include <gtest/gtest.h>

#include <sstream>

namespace longhaul::outer {
namespace {

// Samples whose metric family has no preceding TYPE line; counts the samples.
int check_declared(const std::string& text) {
  std::istringstream lines(text);
  std::string line, declared;
  int samples = 0;
  while (std::getline(lines, line)) {
    EXPECT_FALSE(line.empty());
    if (line.rfind("# TYPE ", 0) == 0) declared = line.substr(7, line.find(' ', 7) - 7);
    if (line.empty() || line[0] == '#') continue;
    ++samples;
    EXPECT_EQ(line.rfind(declared, 0), 0u) << "sample without its TYPE line: " << line;
  }
  return samples;
}

TEST(CoordinatorMetrics, EverySampleIsDeclaredAndLabelsAreEscaped) {
  CoordinatorMetrics m;
  m.process_metrics = false;
  m.rounds_total = 7;
  m.last_round_duration_s = 1.5;
  m.sites_connected = 2;
  m.rejected_uploads_total = 1;
  m.sites["site-a"] = {100, 200, "", {}};
  m.sites["we\"ird\\id\nx"] = {3, 4, "", {}};
  const std::string text = render_prometheus(m);
  EXPECT_NE(text.find("longhaul_rounds_total 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("longhaul_round_duration_seconds 1.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("longhaul_bytes_received_total{site=\"site-a\"} 100\n"), std::string::npos) << text;
  EXPECT_NE(text.find("longhaul_bytes_sent_total{site=\"we\\\"ird\\\\id\\nx\"} 4\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("longhaul_eval_loss"), std::string::npos) << "no eval yet: no eval metric";
  EXPECT_EQ(text.find("process_"), std::string::npos);
  EXPECT_EQ(check_declared(text), 7 + 2 * 2);

  m.eval_loss = 3.25;
  EXPECT_NE(render_prometheus(m).find("longhaul_eval_loss 3.25\n"), std::string::npos);
}

TEST(CoordinatorMetrics, PerSiteFieldsBecomeCountersAndGauges) {
  CoordinatorMetrics m;
  m.process_metrics = false;
  CoordinatorMetrics::PerSite a{10, 20, "training",
                                {{"uploads_accepted", 5}, {"uploads_rejected", 1}, {"resyncs", 2},
                                 {"step_rate", 3.5}, {"utilisation", 0.75}, {"note", "text is skipped"}}};
  m.sites["site-a"] = a;
  m.sites["site-b"] = {1, 2, "disconnected", {{"uploads_accepted", 0}}};
  const std::string t = render_prometheus(m);
  EXPECT_NE(t.find("longhaul_site_state{site=\"site-a\",state=\"training\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_site_state{site=\"site-a\",state=\"joined\"} 0\n"), std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_site_state{site=\"site-b\",state=\"disconnected\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_site_uploads_total{site=\"site-a\",verdict=\"accepted\"} 5\n"), std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_site_uploads_total{site=\"site-a\",verdict=\"rejected\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("# TYPE longhaul_site_resyncs_total counter\nlonghaul_site_resyncs_total{site=\"site-a\"} 2\n"),
            std::string::npos) << t;
  EXPECT_NE(t.find("# TYPE longhaul_site_step_rate gauge\nlonghaul_site_step_rate{site=\"site-a\"} 3.5\n"),
            std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_site_utilisation{site=\"site-a\"} 0.75\n"), std::string::npos) << t;
  EXPECT_EQ(t.find("note"), std::string::npos) << "non-numeric fields are not metrics";
  EXPECT_EQ(t.find("longhaul_site_protocol_errors_total"), std::string::npos) << "absent field: no family";
  check_declared(t);
}

TEST(CoordinatorMetrics, PhaseHistogramsHaveCumulativeBuckets) {
  Histogram h = Histogram::seconds();
  h.observe(0.003);  // first bucket
  h.observe(0.7);    // le=1
  h.observe(1e6);    // beyond the last bound: +Inf only
  CoordinatorMetrics m;
  m.process_metrics = false;
  m.phase_seconds["aggregation"] = h;
  const std::string t = render_prometheus(m);
  EXPECT_NE(t.find("# TYPE longhaul_round_phase_seconds histogram\n"), std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_round_phase_seconds_bucket{phase=\"aggregation\",le=\"0.005\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_round_phase_seconds_bucket{phase=\"aggregation\",le=\"0.5\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_round_phase_seconds_bucket{phase=\"aggregation\",le=\"1\"} 2\n"), std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_round_phase_seconds_bucket{phase=\"aggregation\",le=\"7200\"} 2\n"), std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_round_phase_seconds_bucket{phase=\"aggregation\",le=\"+Inf\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("longhaul_round_phase_seconds_count{phase=\"aggregation\"} 3\n"), std::string::npos) << t;
  check_declared(t);

  RoundPhaseTimer timer;
  timer.start(RoundPhaseTimer::Clock::now() - std::chrono::seconds(3));
  timer.lap("aggregation");
  timer.lap("publish");
  timer.lap("publish");  // laps of one phase add up: observed once per round
  timer.finish();
  ASSERT_EQ(timer.histograms().size(), 3u);
  EXPECT_EQ(timer.histograms().at("publish").count, 1u);
  EXPECT_GE(timer.histograms().at("wait_uploads").sum, 3.0);
}

TEST(CoordinatorMetrics, ProcessMetricsComeFromProc) {
  const std::string t = render_process_metrics();
  for (const char* name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                           "process_virtual_memory_bytes ", "process_open_fds ", "process_max_fds ",
                           "process_threads ", "process_start_time_seconds "})
    EXPECT_NE(t.find(std::string("\n") + name), std::string::npos) << name << " missing in\n" << t;
  check_declared(t);
}

}  // namespace
}  // namespace longhaul::outer
