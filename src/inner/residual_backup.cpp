#include "inner/residual_backup.h"

#include <fstream>
#include <stdexcept>
#include <vector>

namespace longhaul::inner {

namespace {
constexpr int64_t kChunk = int64_t{1} << 24;  // floats per host copy
}

void ResidualBackup::save(const torch::Tensor& values, int tag) {
  valid_ = false;
  {
    std::ofstream out(file_, std::ios::binary | std::ios::trunc);
    for (int64_t b = 0; b < values.numel() && out; b += kChunk) {
      const torch::Tensor h =
          values.narrow(0, b, std::min(kChunk, values.numel() - b)).to(torch::kCPU, torch::kFloat32).contiguous();
      out.write(reinterpret_cast<const char*>(h.data_ptr<float>()), static_cast<std::streamsize>(h.numel() * 4));
    }
    out.close();  // the last bytes' write can fail here (a full disk)
    if (!out) throw std::runtime_error(file_.string() + ": cannot write the residual's backup");
  }
  tag_ = tag;
  saved_ = values.numel();
  valid_ = true;
}

bool ResidualBackup::restore_into(const torch::Tensor& dst) {
  if (!valid_) return false;
  valid_ = false;
  if (dst.numel() != saved_)
    throw std::runtime_error(file_.string() + ": the residual's backup holds " + std::to_string(saved_) +
                             " values, not " + std::to_string(dst.numel()));
  // Missing or short: refused before dst is touched (it keeps the residual it had).
  std::error_code ec;
  const auto size = std::filesystem::file_size(file_, ec);
  if (ec || size != static_cast<uintmax_t>(saved_) * 4)
    throw std::runtime_error(file_.string() + ": the residual's backup is missing or short (" +
                             (ec ? ec.message() : std::to_string(size) + " bytes") + ", expected " +
                             std::to_string(saved_ * 4) + ")");
  std::ifstream in(file_, std::ios::binary);
  std::vector<float> buf(static_cast<size_t>(std::min(kChunk, std::max<int64_t>(saved_, 1))));
  for (int64_t b = 0; b < saved_; b += kChunk) {
    const int64_t k = std::min(kChunk, saved_ - b);
    in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(k * 4));
    if (!in || in.gcount() != static_cast<std::streamsize>(k * 4))
      throw std::runtime_error(file_.string() + ": reading the residual's backup failed midway (dst partly restored)");
    dst.narrow(0, b, k).copy_(torch::from_blob(buf.data(), {k}, torch::kFloat32));
  }
  std::filesystem::remove(file_, ec);
  return true;
}

void ResidualBackup::drop() {
  if (!valid_) return;
  valid_ = false;
  std::error_code ec;
  std::filesystem::remove(file_, ec);
}

}  // namespace longhaul::inner
