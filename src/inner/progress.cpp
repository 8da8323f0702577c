#include "inner/progress.h"

#include <unistd.h>

#include <cstdio>
#include <string>

#include "common/log.h"

namespace longhaul::inner {

namespace {

std::string format_eta(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  auto t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", long(t / 3600), long(t / 60 % 60));
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", long(t / 60), long(t % 60));
  return buf;
}

}  // namespace

Progress::Progress(int64_t total_steps, int64_t first_step, int64_t log_every)
    : Progress(total_steps, first_step, log_every, ::isatty(STDERR_FILENO) == 1) {}

Progress::Progress(int64_t total_steps, int64_t first_step, int64_t log_every, bool tty)
    : total_(total_steps), first_(first_step), log_every_(log_every < 1 ? 1 : log_every), tty_(tty),
      start_(std::chrono::steady_clock::now()), last_draw_() {}

Progress::~Progress() { clear_line(); }

void Progress::clear_line() {
  if (line_open_) {
    std::fputc('\n', stderr);
    line_open_ = false;
  }
}

void Progress::step(int64_t step, double loss, double tokens_per_s) {
  auto now = std::chrono::steady_clock::now();
  double spent = std::chrono::duration<double>(now - start_).count();
  double eta = step > first_ ? spent / double(step - first_) * double(total_ - step) : -1;
  if (tty_) {
    if (step != total_ && now - last_draw_ < std::chrono::milliseconds(200)) return;
    last_draw_ = now;
    std::fprintf(stderr, "\rstep %ld/%ld  loss %.4f  %.3g tok/s  ETA %s   ", long(step),
                 long(total_), loss, tokens_per_s, format_eta(eta).c_str());
    std::fflush(stderr);
    line_open_ = true;
  } else if (step % log_every_ == 0 || step == total_) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "step %ld/%ld loss %.4f tokens/s %.4g eta %s", long(step),
                  long(total_), loss, tokens_per_s, format_eta(eta).c_str());
    LH_LOG(Info, "train") << buf;
  }
}

void Progress::eval(int64_t step, double val_loss) {
  clear_line();
  char buf[96];
  std::snprintf(buf, sizeof buf, "step %ld/%ld val_loss %.4f", long(step), long(total_), val_loss);
  LH_LOG(Info, "train") << buf;
}

void Progress::finish(int64_t step, double elapsed_s) {
  clear_line();
  LH_LOG(Info, "train") << "done: " << step << " steps in " << elapsed_s << " s";
}

}  // namespace longhaul::inner
