// Human-facing progress of a training run on stderr.
//  * On a terminal: one line rewritten in place ("\r"), at most every 0.2 s:
//      step 120/2000  loss 2.3141  1.52e+04 tok/s  ETA 3m05s
//  * Otherwise (pipes, CI logs): a plain log line every `log_every` steps.
// Evaluations and the end of the run always get their own line.
#pragma once

#include <chrono>
#include <cstdint>

namespace longhaul::inner {

class Progress {
 public:
  // `first_step`: steps already done when this process started (resume), for the ETA.
  Progress(int64_t total_steps, int64_t first_step, int64_t log_every);
  Progress(int64_t total_steps, int64_t first_step, int64_t log_every, bool tty);
  ~Progress();

  void step(int64_t step, double loss, double tokens_per_s);
  void eval(int64_t step, double val_loss);
  void finish(int64_t step, double elapsed_s);
  bool tty() const { return tty_; }

 private:
  void clear_line();
  int64_t total_, first_, log_every_;
  bool tty_;
  bool line_open_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace longhaul::inner
