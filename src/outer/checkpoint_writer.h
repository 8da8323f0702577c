// The coordinator's checkpoint written on a background thread (issue 13 §1: off the round's
// tail). The file is still written with AtomicFileWriter (temp file, fsync, rename), so a crash
// at any point leaves the previous complete checkpoint; the round journal (round_journal.h)
// covers the rounds published after it.
//
// Contract: the views passed to start() must keep showing the same bytes until wait() returns:
// the coordinator waits before its next outer step (the only writer of θ master, θ_pub and the
// momentum). One write at a time: start() waits for the previous one.
//
// A write that hangs (a stalled disk or network file system) must not hold the coordinator
// forever: wait_for() gives up after a timeout, and the coordinator then exits (the previous
// checkpoint and the round journal keep every published round; see coordinator.cpp).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <mutex>
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
  // The same, for at most timeout_s seconds; every warn_every_s seconds of waiting it calls
  // on_slow(seconds waited so far). True: no write in flight any more (its error rethrown as
  // by wait()). False: the write is still running after timeout_s; it goes on, and only wait()
  // or wait_for() may follow.
  bool wait_for(double timeout_s, const std::function<void(double)>& on_slow, double warn_every_s = 30);
  bool busy() const { return thread_.joinable(); }
  const std::filesystem::path& path() const { return path_; }  // of the last write started

 private:
  std::thread thread_;
  std::exception_ptr error_;
  std::filesystem::path path_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = true;  // the thread has finished its write (guarded by mu_)
};

}  // namespace longhaul::outer
