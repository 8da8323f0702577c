#include "inner/device.h"

#include <ATen/autocast_mode.h>

#include <charconv>

#include "common/error.h"

namespace longhaul::inner {

bool cuda_available() { return torch::cuda::is_available(); }

torch::Device parse_device(const std::string& spec) {
  if (spec == "cpu") return torch::Device(torch::kCPU);
  int index = 0;
  if (spec != "cuda") {
    const std::string prefix = "cuda:";
    const char* first = spec.data() + prefix.size();
    const char* last = spec.data() + spec.size();
    auto [ptr, ec] = spec.rfind(prefix, 0) == 0 && spec.size() > prefix.size()
                         ? std::from_chars(first, last, index)
                         : std::from_chars_result{first, std::errc::invalid_argument};
    if (ec != std::errc() || ptr != last || index < 0)
      throw UserError("device = \"" + spec +
                      "\": expected \"cpu\", \"cuda\" or \"cuda:N\" (N a GPU index >= 0)");
  }
  if (!cuda_available())
    throw UserError("device = \"" + spec +
                    "\": CUDA is not available here (no GPU visible to LibTorch or no driver); use "
                    "device = \"cpu\"");
  const int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count)
    throw UserError(detail::concat("device = \"", spec, "\": only ", count,
                                   " CUDA device(s) visible (cuda:0..cuda:", count - 1, ")"));
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

AutocastGuard::AutocastGuard(const torch::Device& device, bool enabled) {
  if (!enabled || !device.is_cuda()) return;
  active_ = true;
  prev_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
  prev_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled_);
  at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype_);
}

}  // namespace longhaul::inner
