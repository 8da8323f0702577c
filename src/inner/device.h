// Device selection ("cpu" | "cuda" | "cuda:N") and bf16 autocast for the inner loop.
#pragma once

#include <torch/torch.h>

#include <string>

namespace longhaul::inner {

// Parses a device string. Throws UserError for anything else, and for a CUDA device when
// LibTorch sees no GPU or N >= the number of GPUs (the message says what is available).
torch::Device parse_device(const std::string& spec);

// True when LibTorch can use at least one CUDA device.
bool cuda_available();

// RAII: while alive, CUDA ops on `device` autocast to bfloat16 (as torch.autocast("cuda",
// dtype=torch.bfloat16)); restores the previous state on destruction. A no-op when `enabled`
// is false or the device is not CUDA (CPU runs stay fp32). Wrap forward + loss, not backward.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, bool enabled);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;
  bool active() const { return active_; }

 private:
  bool active_ = false;
  bool prev_enabled_ = false;
  c10::ScalarType prev_dtype_ = c10::ScalarType::Undefined;
};

}  // namespace longhaul::inner
