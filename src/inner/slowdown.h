// Emulated device speed — a TESTING AND BENCHMARKING AID, not a production feature.
//
// A machine without a mixed cluster can still exercise the throughput-proportional split:
// give a device `slowdown = s` (>= 1) and after each piece of work it sleeps until the work
// has taken s times its compute time, so it behaves like a device s times slower (its
// sequences/s drop by the factor s). Compute time is the worker thread's CPU time when the
// device is a 1-thread CPU worker (so that other processes on a busy machine, which stretch
// wall time, do not count as the device's work), else the wall time of the work. With s = 1
// (the default) nothing sleeps. DeviceGroup paces on the device's cheapest step so far (per
// sequence), not on the step just done: on a VM the step after a long sleep can cost several
// times its usual CPU, and pacing on that compounded (factor 8 once gave ~60x, not 8x). The sleep is capped at kMaxSleep per call so a mis-set factor
// cannot wedge a run.
#pragma once

#include <chrono>

namespace longhaul::inner {

class Slowdown {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kMaxSleep{60};
  static constexpr double kMaxFactor = 1000.0;

  // factor in [1, kMaxFactor]; throws InvariantError otherwise (configs validate earlier).
  explicit Slowdown(double factor = 1.0);

  double factor() const { return factor_; }
  // Call when the work that started at `work_start` is done: sleeps (factor - 1) x elapsed.
  // Returns the seconds slept.
  double pace(Clock::time_point work_start) const;
  // As pace(), with the compute time given: sleeps until factor x compute_seconds have passed
  // since work_start (no sleep when the work already took longer).
  double pace(Clock::time_point work_start, double compute_seconds) const;

  // CPU time of the calling thread, seconds (CLOCK_THREAD_CPUTIME_ID).
  static double thread_cpu_seconds();

 private:
  double factor_;
};

}  // namespace longhaul::inner
