#include "outer/checkpoint_writer.h"

#include <algorithm>
#include <chrono>

#include "common/log.h"

namespace longhaul::outer {

CheckpointWriter::~CheckpointWriter() {
  try {
    wait();
  } catch (const std::exception& e) {
    LH_LOG(Error, "coordinator") << "background checkpoint write failed: " << e.what();
  }
}

void CheckpointWriter::start(std::filesystem::path path, CoordinatorStateView view, std::function<void()> on_durable,
                             double pause_s) {
  wait();
  path_ = path;
  {
    std::lock_guard<std::mutex> l(mu_);
    done_ = false;
  }
  thread_ = std::thread([this, path = std::move(path), view = std::move(view), on_durable = std::move(on_durable),
                         pause_s] {
    try {
      std::function<void()> midway;
      if (pause_s > 0)
        midway = [pause_s] { std::this_thread::sleep_for(std::chrono::duration<double>(pause_s)); };
      save_coordinator_checkpoint(path, view, midway);
      if (on_durable) on_durable();
    } catch (...) {
      error_ = std::current_exception();
    }
    std::lock_guard<std::mutex> l(mu_);
    done_ = true;
    cv_.notify_all();
  });
}

bool CheckpointWriter::wait_for(double timeout_s, const std::function<void(double)>& on_slow, double warn_every_s) {
  if (thread_.joinable()) {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const auto seconds = [](double s) {
      return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
    };
    const auto until = t0 + seconds(timeout_s);
    auto next_warn = t0 + seconds(warn_every_s);
    std::unique_lock<std::mutex> l(mu_);
    while (!done_) {
      const auto now = Clock::now();
      if (now >= until) return false;
      if (now >= next_warn) {
        l.unlock();
        if (on_slow) on_slow(std::chrono::duration<double>(now - t0).count());
        l.lock();
        next_warn += seconds(warn_every_s);
        continue;
      }
      cv_.wait_until(l, std::min(until, next_warn));
    }
  }
  wait();  // done: the join returns at once
  return true;
}

void CheckpointWriter::wait() {
  if (thread_.joinable()) thread_.join();
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace longhaul::outer
