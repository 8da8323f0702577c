// The coordinator's checkpoint written on a background thread (issue 13 §1: off the round's
// tail). The file is still written with AtomicFileWriter (temp file, fsync, rename), so a crash
// at any point leaves the previous complete checkpoint; the round journal (round_journal.h)
// covers the rounds published after it.
//
// Contract: the views passed to start() must keep showing the same bytes until wait() returns:
// the coordinator waits before its next outer step (the only writer of θ master, θ_pub and the
// momentum). One write at a time: start() waits for the previous one.
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <thread>

#include "outer/coordinator_checkpoint.h"

namespace longhaul::outer {

class CheckpointWriter {
 public:
  CheckpointWriter() = default;
  ~CheckpointWriter();  // waits for the write in flight (its error is logged, not thrown)
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Writes `view` to `path` on a background thread, then calls on_durable() there (after the
  // rename and the directory's fsync). pause_s > 0 (fault injection for tests): the thread
  // sleeps that long midway through the file, after θ master was written.
  void start(std::filesystem::path path, CoordinatorStateView view, std::function<void()> on_durable,
             double pause_s = 0);
  // Waits for the write in flight, if any; rethrows its error (disk full, I/O error).
  void wait();
  bool busy() const { return thread_.joinable(); }

 private:
  std::thread thread_;
  std::exception_ptr error_;
};

}  // namespace longhaul::outer
