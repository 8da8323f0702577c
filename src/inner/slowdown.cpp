#include "inner/slowdown.h"

#include <algorithm>
#include <thread>

#include <time.h>

#include "common/error.h"

namespace longhaul::inner {

Slowdown::Slowdown(double factor) : factor_(factor) {
  LH_CHECK(factor >= 1.0 && factor <= kMaxFactor, "slowdown factor = ", factor);
}

double Slowdown::pace(Clock::time_point work_start) const {
  if (factor_ == 1.0) return 0.0;
  const std::chrono::duration<double> worked = Clock::now() - work_start;
  const double sleep_s =
      std::min((factor_ - 1.0) * worked.count(), std::chrono::duration<double>(kMaxSleep).count());
  if (sleep_s <= 0.0) return 0.0;
  std::this_thread::sleep_for(std::chrono::duration<double>(sleep_s));
  return sleep_s;
}

double Slowdown::pace(Clock::time_point work_start, double compute_seconds) const {
  if (factor_ == 1.0) return 0.0;
  const std::chrono::duration<double> elapsed = Clock::now() - work_start;
  const double sleep_s = std::min(factor_ * compute_seconds - elapsed.count(),
                                  std::chrono::duration<double>(kMaxSleep).count());
  if (sleep_s <= 0.0) return 0.0;
  std::this_thread::sleep_for(std::chrono::duration<double>(sleep_s));
  return sleep_s;
}

double Slowdown::thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace longhaul::inner
