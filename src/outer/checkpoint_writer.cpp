#include "outer/checkpoint_writer.h"

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
  });
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
