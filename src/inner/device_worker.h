// One persistent thread per device of a DeviceGroup: runs one job at a time, handed over by
// run(); wait() blocks until it is done and rethrows what it threw. A thread (not a pool)
// per device so that thread-local state — intra-op thread count, current CUDA device,
// autocast — stays put between steps.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "common/error.h"

namespace longhaul::inner {

class DeviceWorker {
 public:
  // `init` runs once on the new thread before any job (e.g. at::set_num_threads).
  explicit DeviceWorker(std::function<void()> init) {
    busy_ = true;  // the init counts as the first job
    thread_ = std::thread([this, init = std::move(init)] { loop(init); });
    wait();
  }
  ~DeviceWorker() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  DeviceWorker(const DeviceWorker&) = delete;
  DeviceWorker& operator=(const DeviceWorker&) = delete;

  void run(std::function<void()> job) {
    std::lock_guard<std::mutex> lock(mu_);
    LH_CHECK(busy_ == false, "device worker given a job while busy");
    job_ = std::move(job);
    busy_ = true;
    cv_.notify_all();
  }
  // Blocks until the current job is done (no timeout: jobs are bounded compute; collective
  // waits, which can hang on a dead peer, never run on workers). Rethrows the job's exception.
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return !busy_; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void loop(const std::function<void()>& init) {
    finish(init);
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || job_; });
        if (stop_) return;
        job = std::exchange(job_, nullptr);
      }
      finish(job);
    }
  }
  void finish(const std::function<void()>& job) {
    std::exception_ptr err;
    try {
      if (job) job();
    } catch (...) {
      err = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu_);
    error_ = err;
    busy_ = false;
    done_cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::function<void()> job_;
  bool busy_ = false;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace longhaul::inner
